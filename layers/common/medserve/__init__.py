"""MedServe: serve ONNX medical models on AWS Lambda.

Import-light on purpose: submodules are imported by the handlers that need them,
so a function pays at cold start only for what it serves.
"""

from __future__ import annotations

__version__ = "0.1.0"
