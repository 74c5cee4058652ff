"""ModelsFunction: health, the model catalogue and the OpenAPI document."""

from __future__ import annotations

from medserve import snapstart
from medserve.api import create_app, json_response, lambda_entry, request_id, version_param
from medserve.openapi import openapi_document
from medserve.registry import Registry

REGISTRY = Registry.from_env(sessions=False)  # manifests + sha256 checks; no ONNX Runtime here
app = create_app()


@app.get("/v1/health")
def health():
    return json_response({"status": "ok", "models": REGISTRY.ids()}, request_id(app))


@app.get("/v1/models")
def list_models():
    return json_response({"models": [e.info() for e in REGISTRY.entries()]}, request_id(app))


@app.get("/v1/models/<model_id>")
def get_model(model_id: str):
    entry = REGISTRY.get(model_id, version=version_param(app))  # ?version= pins a version's document
    return json_response({**entry.detail(), "versions": REGISTRY.versions(model_id)}, request_id(app))


@app.get("/openapi.json")
def openapi():
    return json_response(openapi_document(REGISTRY), request_id(app))


lambda_handler = lambda_entry(app)
# No sessions here: the warm-up answers the catalogue and OpenAPI routes once.
SNAPSTART = snapstart.install(app, handler=lambda_handler, warm_paths=("/v1/health", "/v1/models", "/openapi.json"))
