"""HTTP glue shared by every handler: Powertools resolver, problem+json, responses.

Handlers stay thin: they declare routes and call the task library. Everything an
API Gateway answer needs (request ids, FHIR negotiation, RFC 9457 errors for our
own problems *and* Powertools' 404/405/422/parse errors) lives here, once.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from medserve.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    bad_request,
    frames,
    method_not_allowed,
    not_found,
    unknown_key,
    unprocessable,
    unsupported_media_type,
)

JSON = "application/json"
FHIR_JSON = "application/fhir+json"
SYNTHETIC_WARNING = (
    "This model was trained on SYNTHETIC data generated in code, not on patients: "
    "a demonstration only, its outputs mean nothing clinically."
)

# A route that answers without a prediction publishes no metric; that is expected, not a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(log_uncaught_exceptions=False)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MedServe"))

_TOO_DEEP = "the request body is nested too deeply to be read"
_NOT_UTF8 = "the request body is not UTF-8 text; send JSON encoded as UTF-8"
_JSON_TYPES = re.compile(r"^application/([a-z0-9.+-]*\+)?json$")


def dumps(body: Any) -> str:
    """Serialise a response body; non-finite floats are a bug, never sent."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False, default=_default)


def _default(obj: Any) -> Any:
    # numpy scalars and arrays without importing numpy here
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class MedServeResolver(APIGatewayRestResolver):
    """APIGatewayRestResolver that remembers its routes, to answer 405 with ``Allow``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.route_table: list[tuple[re.Pattern[str], str]] = []
        self.accepted_content_types: tuple[str, ...] = ()
        self.model_lookup: Callable[[str], Any] | None = None

    def route(self, rule: str, method: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: D401
        methods = [method] if isinstance(method, str) else list(method)
        pattern = re.compile("^" + re.sub(r"<\w+>", r"[^/]+", rule) + "/?$")
        for m in methods:
            self.route_table.append((pattern, m.upper()))
        return super().route(rule, method, *args, **kwargs)

    def allowed_methods(self, path: str) -> list[str]:
        return sorted({m for pattern, m in self.route_table if pattern.match(path)})


def request_id(app: APIGatewayRestResolver) -> str:
    """API Gateway's request id (what the caller sees in ``x-amzn-RequestId``)."""
    try:
        rid = app.current_event.request_context.request_id
    except (AttributeError, KeyError, TypeError):
        rid = None
    if not rid and getattr(app, "lambda_context", None) is not None:
        rid = getattr(app.lambda_context, "aws_request_id", None)
    return str(rid or uuid.uuid4())


def header(app: APIGatewayRestResolver, name: str) -> str:
    """A request header, case-insensitively; ``""`` when absent."""
    value = app.current_event.headers.get(name) if app.current_event.headers else None
    return value or ""


def media_type(value: str) -> str:
    """``"application/json; charset=utf-8"`` -> ``"application/json"``."""
    return value.split(";", 1)[0].strip().lower()


def wants_fhir(app: APIGatewayRestResolver) -> bool:
    """True when the caller's ``Accept`` asks for FHIR JSON."""
    accept = header(app, "accept").lower()
    return any(media_type(part) == FHIR_JSON for part in accept.split(","))


def problem_response(problem: Problem, rid: str) -> Response:
    """The RFC 9457 response for a problem."""
    headers = {"X-Request-Id": rid, **problem.headers}
    return Response(
        status_code=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=dumps(problem.to_dict(rid)),
        headers=headers,
    )


def json_response(body: dict[str, Any], rid: str, *, content_type: str = JSON, status: int = 200) -> Response:
    """A JSON (or FHIR JSON) success response."""
    return Response(status_code=status, content_type=content_type, body=dumps(body), headers={"X-Request-Id": rid})


def _field_from_loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_problem(exc: RequestValidationError) -> Problem:
    """Map Powertools/pydantic validation errors to a 400 or 422 problem naming fields."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return bad_request("the request body is not valid JSON", field="body")
    pairs = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        field = _field_from_loc(loc)
        if kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            parent = _field_from_loc(loc[:-1]) if len(loc) > 1 else ""
            field, message = unknown_key("" if parent == "body" else parent, loc[-1])
        else:
            # pydantic messages describe the rule, not the value: safe to return
            message = str(err.get("msg", "invalid value"))
        pairs.append((field, message))
    return unprocessable(pairs)


def precheck(app: MedServeResolver, event: dict[str, Any]) -> Problem | None:
    """Checks made before routing, in the order a caller would want them answered.

    Powertools validates a body before our route runs, so what must win over a body
    error is decided here: an unknown model (or one of another task) is 404 whatever
    the body; an empty body is 400; a Content-Encoding we do not read, or a
    Content-Type the route does not read, is 415. The JSON media type is also
    normalised to lower case (media types are case-insensitive; Powertools' check is not).
    """
    if (event.get("httpMethod") or "").upper() != "POST" or "POST" not in app.allowed_methods(event.get("path") or ""):
        return None
    model_id = (event.get("pathParameters") or {}).get("model_id")
    if model_id is not None and app.model_lookup is not None:
        try:
            app.model_lookup(model_id)
        except Problem as problem:
            return problem
    headers = event.get("headers") or {}
    lower = {k.lower(): (k, v) for k, v in headers.items()}
    encoding = (lower.get("content-encoding", ("", ""))[1] or "").strip().lower()
    if encoding and encoding != "identity":
        return unsupported_media_type(
            f"Content-Encoding {encoding!r} is not read; send the body uncompressed", field="content-encoding"
        )
    if not event.get("body"):
        return bad_request("the request body is empty", field="body")
    key, raw_ctype = lower.get("content-type", ("Content-Type", ""))
    ctype = media_type(raw_ctype or "")
    accepted: tuple[str, ...] = app.accepted_content_types
    if not ctype or ctype in accepted:
        return None
    if _JSON_TYPES.match(ctype):
        # Powertools only reads bodies whose type starts with "application/json", case-sensitively;
        # every JSON media type (any case, +json suffixes) is read as such.
        headers[key] = "application/json"
        return None
    return unsupported_media_type(
        f"Content-Type {ctype!r} is not read here; send application/json"
        + (f" or one of {', '.join(accepted)}" if accepted else ""),
        field="content-type",
    )


def create_app(
    *,
    accepted_content_types: tuple[str, ...] = (),
    model_lookup: Callable[[str], Any] | None = None,
    validation: bool = True,
) -> MedServeResolver:
    """A resolver whose every error path answers ``application/problem+json``.

    Parameters
    ----------
    accepted_content_types
        Non-JSON request media types a route of this app reads (e.g. images).
    model_lookup
        ``model_id -> entry``, raising a 404 :class:`Problem` for a model this
        function does not serve; checked before the body (see :func:`precheck`).
    validation
        Powertools' request validation (pydantic models in route signatures). An app whose
        routes read their bodies themselves turns it off: its middleware and OpenAPI models
        cost ~100 ms of import at every cold start.
    """
    app = MedServeResolver(enable_validation=validation)
    app.accepted_content_types = accepted_content_types
    app.model_lookup = model_lookup

    @app.exception_handler(Problem)
    def _problem(exc: Problem) -> Response:
        logger.info("problem", extra={"status": exc.status, "problem_type": exc.type, "n_errors": len(exc.errors)})
        return problem_response(exc, request_id(app))

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        problem = validation_problem(exc)
        logger.info("invalid request", extra={"status": problem.status, "n_errors": len(problem.errors)})
        return problem_response(problem, request_id(app))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(_: RequestUnsupportedContentType) -> Response:
        return problem_response(
            unsupported_media_type("unsupported Content-Type", field="content-type"), request_id(app)
        )

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        event = app.current_event
        allowed = app.allowed_methods(event.path)
        if allowed:
            problem = method_not_allowed(event.http_method, allowed)
        else:
            problem = not_found(f"no route {event.http_method} {event.path}")
        return problem_response(problem, request_id(app))

    @app.exception_handler(UnicodeDecodeError)
    def _not_text(_: UnicodeDecodeError) -> Response:
        # Powertools decodes the body as UTF-8 before our route runs.
        return problem_response(bad_request(_NOT_UTF8, field="body"), request_id(app))

    @app.exception_handler(binascii.Error)
    def _not_base64(_: binascii.Error) -> Response:
        # isBase64Encoded with a body that is not base64 (only hand-made events can do this).
        return problem_response(bad_request("the body is not valid base64", field="body"), request_id(app))

    @app.exception_handler(RecursionError)
    def _too_deep(_: RecursionError) -> Response:
        # Only the JSON parser recurses on caller input (Powertools parses bodies before us).
        return problem_response(bad_request(_TOO_DEEP, field="body"), request_id(app))

    @app.exception_handler(Exception)
    def _bug(exc: Exception) -> Response:
        # A 5xx is a bug in MedServe. Log the type and where it happened, never the message:
        # library messages can quote input values (numbers, keys, bytes).
        logger.error("unhandled error", extra={"error_type": type(exc).__name__, "frames": frames(exc)})
        metrics.add_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1)
        problem = Problem(500, "Internal Server Error", "MedServe failed to answer; this is our bug, not yours")
        return problem_response(problem, request_id(app))

    return app


def read_json(app: APIGatewayRestResolver) -> dict[str, Any]:
    """The request body as a JSON object: 400 when unreadable, 422 when not an object."""
    try:
        raw = app.current_event.decoded_body
    except UnicodeDecodeError as exc:
        raise bad_request(_NOT_UTF8, field="body") from exc
    if raw is None or not raw.strip():
        raise bad_request("the request body is empty; send a JSON object", field="body")
    try:
        # NaN/Infinity literals are parsed (as Python's json does, and as the risk route's
        # validation does) so that the field validation names them: 422, not 400.
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request("the request body is not valid JSON", field="body") from exc
    except RecursionError as exc:
        raise bad_request(_TOO_DEEP, field="body") from exc
    if not isinstance(body, dict):
        raise unprocessable([("body", "must be a JSON object")])
    return body


def warnings_for(entry: Any, extra: list[str] | None = None) -> list[str]:
    """Warnings every response of this model carries (synthetic data first)."""
    out = [SYNTHETIC_WARNING] if entry.synthetic else []
    for w in extra or []:
        if w not in out:
            out.append(w)
    return out


def prediction_response(
    app: APIGatewayRestResolver,
    entry: Any,
    result: dict[str, Any],
    *,
    fhir: Callable[[str], dict[str, Any]] | None = None,
) -> Response:
    """Answer a prediction as JSON, or as a FHIR Bundle when ``Accept`` asks for it."""
    rid = request_id(app)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    logger.append_keys(model_id=entry.id, model_version=entry.version)
    if fhir is not None and wants_fhir(app):
        return json_response(fhir(rid), rid, content_type=FHIR_JSON)
    body = {"model": entry.info(), "request_id": rid, **result}
    body["warnings"] = warnings_for(entry, result.get("warnings"))
    return json_response(body, rid)


def finite(x: float) -> float:
    """A float that must be finite (model outputs); raise rather than emit NaN."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError("model produced a non-finite value")
    return value


def lambda_entry(app: MedServeResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler: correlation ids and metrics around ``app.resolve``.

    The event is never logged (``log_event=False``): bodies may hold patient data.
    """

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True
    )
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        start = time.perf_counter()
        early = precheck(app, event)
        if early is not None:
            rid = (event.get("requestContext") or {}).get("requestId") or str(uuid.uuid4())
            response = {
                "statusCode": early.status,
                "headers": {"Content-Type": PROBLEM_CONTENT_TYPE, "X-Request-Id": rid},
                "body": dumps(early.to_dict(rid)),
                "isBase64Encoded": False,
            }
        else:
            response = app.resolve(event, context)
        logger.info(
            "request",
            extra={
                "route": event.get("resource"),
                "method": event.get("httpMethod"),
                "status": response.get("statusCode"),
                "body_bytes": len(event.get("body") or ""),
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
            },
        )
        return response

    return handler
