"""Offline model export for MedServe: train with Keras, export with tf2onnx, gate on parity.

TensorFlow is only needed here (``.venv-export``); it is never a runtime dependency.
Run ``make models`` (``python -m model_export --all``) to rebuild every model folder
under ``layers/models/<id>/<version>/``.
"""

from __future__ import annotations

__all__ = ["common"]
