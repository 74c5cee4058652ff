"""ImagingFunction: ``POST /v1/imaging/{model_id}/predict`` (radiographs: PNG, JPEG, DICOM)."""

from __future__ import annotations

from medserve import snapstart
from medserve.api import lambda_entry, task_app
from medserve.registry import Registry

REGISTRY = Registry.from_env(task="imaging")  # Lambda init: sessions opened once
app = task_app("imaging", REGISTRY)
lambda_handler = lambda_entry(app)
SNAPSTART = snapstart.install(app, REGISTRY, task="imaging", handler=lambda_handler)  # see medserve.snapstart
