"""VitalsFunction: ``POST /v1/vitals/{model_id}/predict`` (vital-sign sequence models)."""

from __future__ import annotations

from medserve import snapstart
from medserve.api import lambda_entry, task_app
from medserve.registry import Registry

REGISTRY = Registry.from_env(task="vitals")  # Lambda init: sessions opened once
app = task_app("vitals", REGISTRY)
lambda_handler = lambda_entry(app)
SNAPSTART = snapstart.install(app, REGISTRY, task="vitals", handler=lambda_handler)  # see medserve.snapstart
