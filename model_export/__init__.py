"""Offline model export for MedServe: train with Keras, export with tf2onnx, gate on parity.

TensorFlow is only needed here (``.venv-export``); it is never a runtime dependency.
Run ``make models`` (``python -m model_export --all``) to rebuild every model folder
under ``layers/models/<id>/<version>/``.

Shared pieces, one module per concern: :mod:`~model_export.splits` (seed, determinism,
data splits), :mod:`~model_export.metrics` (bootstrap intervals, thresholds),
:mod:`~model_export.calibration` (ECE, reliability, Platt/temperature scaling),
:mod:`~model_export.export` (tf2onnx export, parity gate, hashes), :mod:`~model_export.plots`,
:mod:`~model_export.cards` (model cards) and :mod:`~model_export.manifest` (input
entries, the model-folder writer).
"""

from __future__ import annotations

__all__ = ["calibration", "cards", "export", "manifest", "metrics", "plots", "splits"]
