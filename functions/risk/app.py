"""RiskFunction: ``POST /v1/risk/{model_id}/predict`` (tabular models)."""

from __future__ import annotations

from medserve import snapstart
from medserve.api import lambda_entry, task_app
from medserve.registry import Registry

REGISTRY = Registry.from_env(task="risk")  # Lambda init: sessions opened once
app = task_app("risk", REGISTRY)
lambda_handler = lambda_entry(app)
SNAPSTART = snapstart.install(app, REGISTRY, task="risk", handler=lambda_handler)  # see medserve.snapstart
