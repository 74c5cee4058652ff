"""Handlers import only what their first request needs (cold start is import time).

Each handler is imported in a fresh interpreter; the heavy modules its first request
never uses must not be loaded at init. Timings are in bench/ (``bench.importtime``);
this only guards against a regression in what is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import MODELS, ROOT

CODE = """
import importlib.util, json, sys
sys.path[:0] = ["layers/common"]
spec = importlib.util.spec_from_file_location("app", f"functions/{sys.argv[1]}/app.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(sys.modules)))
"""
VALIDATION = "aws_lambda_powertools.event_handler.middlewares.openapi_validation"

NOT_AT_INIT = {
    # no request bodies: no validation middleware, no pydantic, no ONNX Runtime or numpy
    "models": {VALIDATION, "pydantic", "onnxruntime", "numpy", "pydicom"},
    # bodies read by medserve itself; DICOM decoding only when a DICOM arrives
    "imaging": {VALIDATION, "pydantic", "pydicom"},
    "vitals": {VALIDATION, "pydantic", "pydicom", "PIL"},
    # every route's body is validated by its task's fields (medserve.fields): no pydantic anywhere
    "risk": {VALIDATION, "pydantic", "pydicom", "PIL"},
}


@pytest.mark.parametrize("task", sorted(NOT_AT_INIT))
def test_handler_init_leaves_unneeded_modules_unloaded(task: str) -> None:
    env = {**os.environ, "MEDSERVE_MODELS_DIR": str(MODELS), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", CODE, task], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "medserve.api" in loaded
    assert loaded & NOT_AT_INIT[task] == set()
