"""The OpenAPI 3.1 document of the whole API (served by ``GET /openapi.json``).

Written from shared/API.md; the model ids and each risk model's features come
from the registry, so a new model appears here with no code change.
"""

from __future__ import annotations

from typing import Any

from medserve import __version__

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


def _risk_features(registry: Any) -> dict[str, Any]:
    variants = []
    for e in registry.entries("risk"):
        props = {}
        for i in e.manifest.get("inputs", []):
            prop: dict[str, Any] = {
                "type": "number",
                "description": f"{i.get('description', '')} [{i.get('unit') or '-'}]",
            }
            if "min" in i:
                prop["minimum"] = i["min"]
            if "max" in i:
                prop["maximum"] = i["max"]
            if i.get("allowed"):
                prop["enum"] = i["allowed"]
            props[i["name"]] = prop
        variants.append(
            {
                "title": e.id,
                "type": "object",
                "properties": props,
                "required": list(props),
                "additionalProperties": False,
            }
        )
    return {"oneOf": variants} if variants else {"type": "object"}


def openapi_document(registry: Any) -> dict[str, Any]:
    """Build the document for the models this deployment serves."""
    ids = {t: [e.id for e in registry.entries(t)] for t in ("risk", "imaging", "vitals")}
    obs_props = {
        "time": {"type": "string", "format": "date-time"},
        "heart_rate": {"type": "number", "description": "beats/min"},
        "respiratory_rate": {"type": "number", "description": "breaths/min"},
        "spo2": {"type": "number", "description": "%"},
        "temperature": {"type": "number", "description": "degrees Celsius"},
        "systolic_bp": {"type": "number", "description": "mmHg"},
        "consciousness": {"type": "string", "enum": ["A", "C", "V", "P", "U"]},
        "supplemental_oxygen": {"type": "boolean"},
    }
    model = {
        "type": "object",
        "required": ["id", "version", "task", "sha256", "synthetic", "intended_use"],
        "properties": {
            "id": {"type": "string"},
            "version": {"type": "string"},
            "task": {"type": "string", "enum": ["risk", "imaging", "vitals"]},
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
        "RiskRequest": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _risk_features(registry)},
                "explain": {"type": "boolean", "default": False},
            },
        },
        "RiskResponse": {
            "type": "object",
            "properties": {
                **common_pred,
                "predictions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "label": {"type": "string"},
                            "probability": {"type": "number"},
                            "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                            "value": {"type": "number"},
                            "unit": {"type": ["string", "null"]},
                            "contributions": {"type": "object", "additionalProperties": {"type": "number"}},
                        },
                    },
                },
            },
        },
        "ImagingJsonRequest": {
            "type": "object",
            "required": ["image"],
            "additionalProperties": False,
            "properties": {"image": {"type": "string", "contentEncoding": "base64"}, "explain": {"type": "boolean"}},
        },
        "ImagingResponse": {
            "type": "object",
            "properties": {
                **common_pred,
                "prediction": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"},
                        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                },
                "heatmap": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "properties": {
                                "png": {"type": "string"},
                                "width": {"type": "integer"},
                                "height": {"type": "integer"},
                            },
                        },
                    ]
                },
            },
        },
        "VitalsRequest": {
            "type": "object",
            "required": ["observations"],
            "additionalProperties": False,
            "properties": {
                "observations": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 500,
                    "items": {
                        "type": "object",
                        "required": list(obs_props),
                        "additionalProperties": False,
                        "properties": obs_props,
                    },
                },
                "explain": {"type": "boolean", "default": False},
            },
        },
        "VitalsResponse": {
            "type": "object",
            "properties": {
                **common_pred,
                "prediction": {
                    "type": "object",
                    "properties": {
                        "probability": {"type": "number"},
                        "label": {"type": "string"},
                        "horizon_hours": {"type": "number"},
                    },
                },
                "news2": {
                    "type": "object",
                    "properties": {
                        "score": {"type": "integer"},
                        "risk": {"type": "string", "enum": ["low", "low-medium", "medium", "high"]},
                        "components": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
                "contributions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "start": {"type": "string"},
                            "end": {"type": "string"},
                            "weight": {"type": "number"},
                        },
                    },
                },
            },
        },
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
                "parameters": [_model_param(sorted(sum(ids.values(), [])))],
                "responses": {"200": {"description": "model"}, **_problem_responses(404)},
            }
        },
        "/v1/risk/{model_id}/predict": {
            "post": {
                "summary": "Tabular risk prediction",
                "parameters": [_model_param(ids["risk"]), accept],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RiskRequest"}}},
                },
                "responses": {"200": _ok("RiskResponse"), **_problem_responses(400, 404, 405, 413, 415, 422)},
            }
        },
        "/v1/imaging/{model_id}/predict": {
            "post": {
                "summary": "Image classification with optional CAM heatmap",
                "parameters": [
                    _model_param(ids["imaging"]),
                    accept,
                    {"name": "explain", "in": "query", "schema": {"type": "boolean"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ImagingJsonRequest"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                        "application/dicom": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {"200": _ok("ImagingResponse"), **_problem_responses(400, 404, 405, 413, 415, 422)},
            }
        },
        "/v1/vitals/{model_id}/predict": {
            "post": {
                "summary": "Deterioration risk from a vital-sign sequence, beside NEWS2",
                "parameters": [_model_param(ids["vitals"]), accept],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VitalsRequest"}}},
                },
                "responses": {"200": _ok("VitalsResponse"), **_problem_responses(400, 404, 405, 413, 415, 422)},
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    from medserve.v2 import openapi_paths  # imported here: NumPy loads only when the document is asked for

    paths.update(openapi_paths(sorted(sum(ids.values(), []))))
    return {
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
