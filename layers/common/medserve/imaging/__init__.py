"""Imaging models: decode radiographs (PNG, JPEG, DICOM), predict, explain with CAM, report in FHIR.

Import-light on purpose: :mod:`medserve.imaging.decode` needs only NumPy and Pillow
(pydicom is imported inside its DICOM branch), and :mod:`medserve.imaging.service`
adds the model glue. Import the submodule you need.
"""

from __future__ import annotations
