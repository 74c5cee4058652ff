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
from urllib.parse import urlencode

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


def resource_of(path: str) -> tuple[str, dict[str, str] | None]:
    """The API's path template and path parameters for a concrete MedServe path."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "v1" and parts[3] == "predict":
        return f"/v1/{parts[1]}/{{model_id}}/predict", {"model_id": parts[2]}
    if len(parts) == 3 and parts[:2] == ["v1", "models"]:
        return "/v1/models/{model_id}", {"model_id": parts[2]}
    return path, None


def golden_event(
    request: dict[str, Any], *, request_id: str = "golden", stage: str = "prod", user_agent: str = "medserve-golden"
) -> dict[str, Any]:
    """An API Gateway REST proxy event for one golden request, as API Gateway would send it.

    Used by the SnapStart warm-up, ``local/golden.py`` and the CodeDeploy hooks alike.
    """
    path = str(request["path"])
    resource, path_params = resource_of(path)
    method = str(request.get("method") or "GET").upper()
    headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
    query = {str(k): str(v) for k, v in (request.get("query") or {}).items()} or None
    body: str | None = None
    is_b64 = False
    if "body_base64" in request:
        body, is_b64 = str(request["body_base64"]), True
    elif "body" in request:
        raw = request["body"]
        body = raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"))
        if not any(k.lower() == "content-type" for k in headers):
            headers["content-type"] = "application/json"
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
            "path": f"/{stage}{path}" + (f"?{urlencode(query)}" if query else ""),
            "stage": stage,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": user_agent, "userArn": None},
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


def differences(
    actual: Any, expected: Any, *, atol: float, rtol: float, where: str = "", subset: bool = False
) -> list[str]:
    """Where ``actual`` differs from ``expected``: numbers within ``atol + rtol * |expected|``, the rest equal.

    ``subset``: keys of ``actual`` that ``expected`` does not pin are ignored (a whole response
    against the recorded numeric part). Lines name the JSON path and the rule, never a value.

    Returns
    -------
    list of str
        One line per difference (empty when they match).
    """
    here = where or "$"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{here}: expected an object"]
        out = [f"{here}.{k}: missing" for k in expected if k not in actual]
        if not subset:
            out += [f"{here}.{k}: not expected" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(actual[k], expected[k], atol=atol, rtol=rtol, where=f"{here}.{k}", subset=subset)
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{here}: expected a list of {len(expected)}"]
        out = []
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            out += differences(a, e, atol=atol, rtol=rtol, where=f"{here}[{i}]", subset=subset)
        return out
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        return [] if actual == expected and type(actual) is type(expected) else [f"{here}: differs"]
    if isinstance(actual, bool) or not isinstance(actual, int | float) or not math.isfinite(actual):
        return [f"{here}: expected a number"]
    if abs(actual - expected) > atol + rtol * abs(expected):
        return [f"{here}: differs by more than atol={atol}, rtol={rtol}"]
    return []
