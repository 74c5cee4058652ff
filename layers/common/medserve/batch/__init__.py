"""Batch inference from S3 (``incoming/<model_id>/<name>`` -> ``results/`` or ``errors/``).

The batch function (``functions/batch/app.py``) is fed by SQS messages that carry
S3 event notifications. Everything it does lives here, import-light by module:

- :mod:`medserve.batch.keys`: key layout, output keys, log-safe key hashes.
- :mod:`medserve.batch.readers`: CSV / JSON Lines parsing into rows (pure Python).
- :mod:`medserve.batch.rows`: what every task's batch reader shares (each task reads its own objects).
- :mod:`medserve.batch.storage`: the S3 client (lazy, cached) and error classification.
- :mod:`medserve.batch.worker`: one SQS record -> exactly one outcome document.
"""

from __future__ import annotations
