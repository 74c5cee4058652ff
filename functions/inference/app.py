"""InferenceFunction: the Open Inference Protocol v2 (``/v2/...``) for every model.

v2 paths carry no task, so this one function serves every model (all are small:
their sessions together stay far below the function's memory). The protocol's logic
is in :mod:`medserve.v2`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from medserve import snapstart, v2
from medserve.api import create_app, header, json_response, lambda_entry, problem_response, request_id
from medserve.registry import Registry

REGISTRY = Registry.from_env()  # Lambda init: every model's session opened once
app = create_app()


@app.not_found
def no_route(_: NotFoundError) -> Response:
    """Every path below /v2 reaches this function: 404/405 without repeating the path."""
    event = app.current_event
    return problem_response(v2.no_route(event.http_method, app.allowed_methods(event.path)), request_id(app))


@app.get("/v2")
def server_metadata():  # no return annotation: Powertools would build a schema for it
    return json_response(v2.server_metadata(), request_id(app))


@app.get("/v2/health/live")
def live():
    return json_response({"live": True}, request_id(app))


@app.get("/v2/health/ready")
def ready():
    return json_response(v2.server_ready(REGISTRY), request_id(app))


@app.get("/v2/models/<name>")
def model_metadata(name: str):
    return json_response(v2.model_metadata(REGISTRY, name, None), request_id(app))


@app.get("/v2/models/<name>/versions/<version>")
def model_version_metadata(name: str, version: str):
    return json_response(v2.model_metadata(REGISTRY, name, version), request_id(app))


@app.get("/v2/models/<name>/ready")
def model_ready(name: str):
    return json_response(v2.model_ready(REGISTRY, name, None), request_id(app))


@app.get("/v2/models/<name>/versions/<version>/ready")
def model_version_ready(name: str, version: str):
    return json_response(v2.model_ready(REGISTRY, name, version), request_id(app))


def _infer(name: str, version: str | None) -> Response:
    event = app.current_event
    rid = request_id(app)
    app.answered_by = REGISTRY.get(name, version=version)  # the audit record names the model (404 if unknown)
    v2.check_accept(header(app, "accept"))
    payload, head_length = v2.handle_infer(
        REGISTRY,
        name,
        version,
        body=event.body,
        is_base64=event.is_base64_encoded,
        headers={k.lower(): v for k, v in (event.headers or {}).items()},
        request_id=rid,
        binary_ok=v2.binary_accepted(header(app, "accept")),
    )
    if head_length is None:
        return Response(200, content_type="application/json", body=payload.decode(), headers={"X-Request-Id": rid})
    headers = {v2.HEADER_LENGTH: str(head_length), "X-Request-Id": rid}
    return Response(200, content_type=v2.OCTET_STREAM, body=payload, headers=headers)


@app.post("/v2/models/<name>/infer")
def infer(name: str):
    return _infer(name, None)


@app.post("/v2/models/<name>/versions/<version>/infer")
def infer_version(name: str, version: str):
    return _infer(name, version)


_entry = lambda_entry(app)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler; every problem answer also carries the protocol's ``error`` string."""
    return v2.add_error_member(_entry(event, context))


# SnapStart: before the snapshot, answer the protocol's health and metadata routes once (the
# sessions are open since import); the v1 golden requests warm the v1 functions.
SNAPSTART = snapstart.install(
    app,
    handler=lambda_handler,
    warm_paths=("/v2", "/v2/health/ready", *(f"/v2/models/{model_id}" for model_id in REGISTRY.ids())),
)
