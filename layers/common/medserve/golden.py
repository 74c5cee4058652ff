"""Golden requests: stored requests per model version, and what the model must answer.

``<models_dir>/<id>/<version>/golden.json`` (recorded by ``python -m local.golden --write``)::

    {"model": id, "version": v, "requests": [{"name", "method": "POST",
      "path": "/v1/<task>/<id>/predict", "query": {"version": v},
      "headers": {"content-type": ...}, "body": <JSON> | "body_base64": "...",
      "expect": {"status": 200, "json": {<the numeric part of the response>}},
      "atol": float, "rtol": float}]}

Used by the SnapStart warm-up (:mod:`medserve.snapstart`), the serving parity test and a
deployment's pre-traffic check. Standard library only.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path
from typing import Any

GOLDEN_FILE = "golden.json"
IGNORED_KEYS = ("model", "request_id", "warnings")
"""Response keys that are not the model's answer (who answered, the request id, notes)."""
MAX_STRING = 64
"""Longer strings in a response are encodings (e.g. a heatmap PNG), not compared."""


def golden_requests(entry_or_folder: Any) -> list[dict[str, Any]]:
    """The golden requests stored beside a model version (``[]`` when it has none)."""
    folder = Path(getattr(entry_or_folder, "path", entry_or_folder))
    path = folder / GOLDEN_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("requests", []))


def golden_event(request: dict[str, Any], *, request_id: str = "golden") -> dict[str, Any]:
    """An API Gateway REST proxy event for one golden request, as API Gateway would send it."""
    path: str = request["path"]
    parts = path.strip("/").split("/")
    # /v1/<task>/<model_id>/predict -> resource /v1/<task>/{model_id}/predict
    path_params = {"model_id": parts[2]} if len(parts) >= 4 else None
    resource = "/" + "/".join(parts[:2] + ["{model_id}"] + parts[3:]) if path_params else path
    headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
    query = {str(k): str(v) for k, v in (request.get("query") or {}).items()} or None
    body: str | None = None
    is_b64 = False
    if "body_base64" in request:
        body, is_b64 = request["body_base64"], True
    elif "body" in request:
        body = json.dumps(request["body"])
    method = str(request.get("method", "POST")).upper()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "medserve-golden"},
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }


def golden_body_bytes(request: dict[str, Any]) -> bytes:
    """The request body as bytes (decoded base64, or the JSON text)."""
    if "body_base64" in request:
        return base64.b64decode(request["body_base64"])
    return json.dumps(request.get("body")).encode("utf-8")


def answer_part(body: Any) -> Any:
    """The part of a response body a golden request pins: the model's answer, blobs left out."""
    if isinstance(body, dict):
        return {
            k: answer_part(v)
            for k, v in body.items()
            if k not in IGNORED_KEYS and not (isinstance(v, str) and len(v) > MAX_STRING)
        }
    if isinstance(body, list):
        return [answer_part(v) for v in body]
    return body


def differences(actual: Any, expected: Any, *, atol: float, rtol: float, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected``: numbers within ``atol + rtol * |expected|``, the rest equal.

    Returns
    -------
    list of str
        One line per difference, naming the JSON path (empty when they match).
    """
    here = where or "$"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{here}: expected an object"]
        out = [f"{here}.{k}: missing" for k in expected if k not in actual]
        out += [f"{here}.{k}: not expected" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(actual[k], expected[k], atol=atol, rtol=rtol, where=f"{here}.{k}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{here}: expected a list of {len(expected)}"]
        out = []
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            out += differences(a, e, atol=atol, rtol=rtol, where=f"{here}[{i}]")
        return out
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        return [] if actual == expected and type(actual) is type(expected) else [f"{here}: {actual!r} != {expected!r}"]
    if isinstance(actual, bool) or not isinstance(actual, int | float) or not math.isfinite(actual):
        return [f"{here}: expected a number"]
    if abs(actual - expected) > atol + rtol * abs(expected):
        return [f"{here}: {actual} differs from {expected} by more than atol={atol}, rtol={rtol}"]
    return []
