"""The OpenAPI 3.1 document of the whole API (served by ``GET /openapi.json``).

Written from shared/API.md. The predict routes come from the task table: each task
writes its request schema from its models' manifests (the same field definitions
that validate requests, so the document cannot drift from what is enforced) and its
response schema; a new model or a new task appears here with no change to this module.
"""

from __future__ import annotations

from typing import Any

from medserve import __version__, tasks, v2_auth

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "Unreadable body",
        404: "Unknown model or route",
        405: "Wrong method",
        413: "Too large",
        415: "Unsupported media type or image format",
        422: "Readable but invalid (fields named in errors)",
    }
    return {
        str(c): {"description": text[c], "content": {"application/problem+json": {"schema": _PROBLEM}}} for c in codes
    }


def _model_param(ids: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if ids:
        schema["enum"] = ids
    return {"name": "model_id", "in": "path", "required": True, "schema": schema}


def _ok(schema_ref: str, fhir: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}
    if fhir:
        content["application/fhir+json"] = {"schema": {"$ref": "#/components/schemas/FhirBundle"}}
    return {"description": "Prediction", "content": content}


def openapi_document(registry: Any) -> dict[str, Any]:
    """Build the document for the models this deployment serves."""
    ids = {t: [e.id for e in registry.entries(t)] for t in tasks.names()}
    model = {
        "type": "object",
        "required": ["id", "version", "task", "sha256", "synthetic", "intended_use"],
        "properties": {
            "id": {"type": "string"},
            "version": {"type": "string"},
            "task": {"type": "string", "enum": list(tasks.names())},
            "sha256": {"type": "string"},
            "synthetic": {"type": "boolean"},
            "intended_use": {"type": "string"},
        },
    }
    common_pred = {
        "model": {"$ref": "#/components/schemas/Model"},
        "request_id": {"type": "string"},
        "warnings": {"type": "array", "items": {"type": "string"}},
    }
    schemas = {
        "Model": model,
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail", "request_id"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "request_id": {"type": "string"},
                "error": {"type": "string", "description": "/v2 routes: the Open Inference Protocol's error message"},
                "errors_omitted": {"type": "integer"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        },
        "FhirBundle": {"type": "object", "description": "FHIR R4 Bundle (type collection)"},
    }
    version = {
        "name": "version",
        "in": "query",
        "required": False,
        "description": "pin a model version (X.Y.Z); without it the live version answers",
        "schema": {"type": "string", "pattern": r"^\d+(\.\d+){0,3}$"},
    }
    accept = {
        "name": "Accept",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["application/json", "application/fhir+json"]},
    }
    paths: dict[str, Any] = {
        "/v1/health": {
            "get": {
                "summary": "Liveness and served model ids",
                "security": [],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/v1/models": {"get": {"summary": "The model catalogue", "responses": {"200": {"description": "models"}}}},
        "/v1/models/{model_id}": {
            "get": {
                "summary": "One model: inputs, outputs, metrics and its card (markdown)",
                "parameters": [_model_param(sorted(sum(ids.values(), []))), version],
                "responses": {"200": {"description": "model"}, **_problem_responses(404)},
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    for name in tasks.names():
        task = tasks.get(name)
        title = name.capitalize()
        schemas[f"{title}Response"] = {"type": "object", "properties": {**common_pred, **task.response_schema()}}
        paths[f"/v1/{name}/{{model_id}}/predict"] = {
            "post": {
                "summary": task.summary,
                "parameters": [_model_param(ids[name]), accept, version, *task.query_parameters()],
                "requestBody": {"required": True, "content": task.request_schema(registry.all_entries(name))},
                "responses": {
                    "200": _ok(f"{title}Response"),
                    **_problem_responses(400, 404, 405, 413, 415, 422),
                },
            }
        }
    from medserve.v2 import openapi_paths  # imported here: NumPy loads only when the document is asked for

    paths.update(openapi_paths(sorted(sum(ids.values(), []))))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "MedServe",
            "version": __version__,
            "description": "Medical AI models served on AWS Lambda. Research use only; not for clinical use.",
        },
        "servers": [{"url": "http://127.0.0.1:3000", "description": "make run"}],
        "security": [{"sigv4": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            },
        },
    }
    return v2_auth.describe(document)  # the /v2 routes' auth as the stack's V2Auth parameter sets it
