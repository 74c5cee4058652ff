"""Vital-sign sequences: NEWS2 and a deterioration model (task ``vitals``).

Import-light: the submodules are imported where they are used.

- :mod:`medserve.vitals.news2`: the RCP 2017 NEWS2 chart (pure Python).
- :mod:`medserve.vitals.features`: observation -> model input encoding (NumPy).
- :mod:`medserve.vitals.validation`: request validation, every violation reported.
- :mod:`medserve.vitals.service`: prediction, occlusion explanation, FHIR bundle.
"""

from __future__ import annotations
