"""HTTP glue shared by every handler: Powertools resolver, problem+json, responses.

Handlers stay thin: they declare routes and call the task library. Everything an
API Gateway answer needs (request ids, FHIR negotiation, RFC 9457 errors for our
own problems *and* Powertools' 404/405/422/parse errors) lives here, once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from medserve import audit, distribution, provenance, tasks
from medserve.negotiate import quality
from medserve.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    bad_request,
    frames,
    method_not_allowed,
    not_acceptable,
    not_found,
    unprocessable,
    unsupported_media_type,
)
from medserve.shadow import Shadow
from medserve.tasks.base import NOT_UTF8, TOO_DEEP, HttpRequest

if TYPE_CHECKING:  # pragma: no cover
    from medserve.registry import Registry

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


def binary_response(body: bytes, rid: str, *, content_type: str) -> Response:
    """A binary success response (API Gateway returns it base64-decoded: a binary media type)."""
    return Response(status_code=200, content_type=content_type, body=body, headers={"X-Request-Id": rid})


def input_digest(event: dict[str, Any]) -> tuple[str | None, int | None]:
    """``(sha256 hex, size)`` of the request body's bytes, or ``(None, None)`` without a body."""
    body = event.get("body")
    if not body:
        return None, None
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body)
        except (binascii.Error, ValueError):
            data = body.encode("utf-8", "surrogateescape")
    else:
        data = body.encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest(), len(data)


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
        self.answered_by: Any = None
        """The model entry of the current request, once looked up (for the audit record)."""
        self.distribution: Any = None
        """The predict route's :class:`medserve.distribution.Windows` (``None`` on other apps)."""

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


def negotiate(app: APIGatewayRestResolver, available: tuple[str, ...]) -> str | None:
    """The best of ``available`` for the caller's ``Accept`` (q-values honoured), or ``None`` (406).

    No ``Accept`` gives the first. Each type takes the quality of its most specific matching
    range (:func:`medserve.negotiate.quality`). On equal quality a type the caller named wins
    over one a wildcard matched; among named ones the more specific representation wins
    (``application/fhir+json, application/json`` is a request for FHIR, as API.md words it);
    among wildcard matches the first of ``available`` (JSON).
    """
    raw = header(app, "accept")
    if not raw.strip():
        return available[0]
    named = {part.split(";", 1)[0].strip().lower() for part in raw.split(",")}
    scored = [
        (quality(raw, kind), kind in named, rank if kind in named else -rank, kind)
        for rank, kind in enumerate(available)
    ]
    best = max(scored)
    return best[3] if best[0] > 0.0 else None


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


def create_app() -> MedServeResolver:
    """A resolver whose every error path answers ``application/problem+json``."""
    app = MedServeResolver()

    @app.exception_handler(Problem)
    def _problem(exc: Problem) -> Response:
        logger.info("problem", extra={"status": exc.status, "problem_type": exc.type, "n_errors": len(exc.errors)})
        return problem_response(exc, request_id(app))

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        event = app.current_event
        allowed = app.allowed_methods(event.path)
        if allowed:
            problem = method_not_allowed(event.http_method, allowed)
        else:
            problem = not_found("no route for this method and path")  # the path is the caller's: not repeated
        return problem_response(problem, request_id(app))

    @app.exception_handler(UnicodeDecodeError)
    def _not_text(_: UnicodeDecodeError) -> Response:
        # Powertools decodes the body as UTF-8 before our route runs.
        return problem_response(bad_request(NOT_UTF8, field="body"), request_id(app))

    @app.exception_handler(binascii.Error)
    def _not_base64(_: binascii.Error) -> Response:
        # isBase64Encoded with a body that is not base64 (only hand-made events can do this).
        return problem_response(bad_request("the body is not valid base64", field="body"), request_id(app))

    @app.exception_handler(RecursionError)
    def _too_deep(_: RecursionError) -> Response:
        # Only the JSON parser recurses on caller input (Powertools parses bodies before us).
        return problem_response(bad_request(TOO_DEEP, field="body"), request_id(app))

    @app.exception_handler(Exception)
    def _bug(exc: Exception) -> Response:
        # A 5xx is a bug in MedServe. Log the type and where it happened, never the message:
        # library messages can quote input values (numbers, keys, bytes).
        logger.error("unhandled error", extra={"error_type": type(exc).__name__, "frames": frames(exc)})
        metrics.add_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1)
        problem = Problem(500, "Internal Server Error", "MedServe failed to answer; this is our bug, not yours")
        return problem_response(problem, request_id(app))

    return app


_JSON_TYPES = re.compile(r"^application/([a-z0-9.+-]*\+)?json$")


def read_request(app: APIGatewayRestResolver, raw_types: tuple[str, ...] = ()) -> HttpRequest:
    """The predict request, checked in the order a caller wants it answered.

    An unknown model was already answered (404); then a Content-Encoding we do not read
    is 415, an empty body 400, and a Content-Type that is neither JSON (any ``+json``,
    any case) nor one of ``raw_types`` 415. Header values are never repeated back.
    """
    event = app.current_event
    encoding = header(app, "content-encoding").strip().lower()
    if encoding and encoding != "identity":
        raise unsupported_media_type(
            "this Content-Encoding is not read; send the body uncompressed", field="header.content-encoding"
        )
    if not event.body:
        raise bad_request("the request body is empty", field="body")
    ctype = media_type(header(app, "content-type"))
    if ctype and ctype not in raw_types and not _JSON_TYPES.match(ctype):
        accepted = ", ".join(("application/json", *raw_types))
        raise unsupported_media_type(
            f"this Content-Type is not read here; send {accepted}", field="header.content-type"
        )
    query = dict(event.query_string_parameters or {})
    query.pop("version", None)
    return HttpRequest(body=event.body, is_base64=bool(event.is_base64_encoded), content_type=ctype, query=query)


def version_param(app: APIGatewayRestResolver) -> str | None:
    """The ``?version=X.Y.Z`` pin, if any; 422 when the query names two."""
    event = app.current_event
    if len((event.multi_value_query_string_parameters or {}).get("version") or []) > 1:
        raise unprocessable([("query.version", "give one version at most")])
    return (event.query_string_parameters or {}).get("version")


def task_app(task_name: str, registry: Registry) -> MedServeResolver:
    """The app of one task's function: ``POST /v1/<task>/<model_id>/predict``.

    One model lookup per request (the pinned or live version), then the task parses,
    predicts and (when asked) writes FHIR.
    """
    task = tasks.get(task_name)
    app = create_app()
    shadow = Shadow.from_env(registry, task_name)  # off unless the deployment names a shadow version and a rate
    windows = distribution.Windows.for_models(registry.entries(task_name))  # the band alarms' datapoints
    app.distribution = windows

    available = (JSON, FHIR_JSON, *task.media_types)

    @app.post(f"/v1/{task_name}/<model_id>/predict")
    def predict(model_id: str):  # no return annotation: Powertools would build a schema for it
        pinned = version_param(app)
        entry = registry.get(model_id, task=task_name, version=pinned)
        app.answered_by = entry
        chosen = negotiate(app, available)
        if chosen is None:
            raise not_acceptable(f"this route answers {', '.join(available)}; the Accept header allows none of them")
        parsed = task.parse(entry, read_request(app, task.raw_content_types))
        if chosen in task.media_types:
            reason = task.renderable(parsed, chosen)
            if reason:
                raise not_acceptable(reason)
        result = task.predict(entry, [parsed])[0]
        live = registry.model(entry.id).live is entry  # the band describes the live version alone
        if live and not distribution.synthetic(request_id(app)):
            full = windows.add(entry.id, task.scores(entry, result), getattr(entry.spec, "positive", None))
            if full:
                record_distribution(entry, full)
        if shadow.on:
            shadow.score(task, registry, entry, parsed, result, pinned=pinned is not None)
        if chosen in task.media_types:
            body, content_type = task.render(entry, parsed, result, chosen)
            return binary_response(body, request_id(app), content_type=content_type)
        fhir = None
        if chosen == FHIR_JSON:
            digest = input_digest(app.current_event.raw_event)[0] or ""

            def fhir(rid: str) -> dict[str, Any]:
                return provenance.label_and_attest(task.fhir(entry, parsed, result, rid), input_sha256=digest)

        return prediction_response(app, entry, result, fhir=fhir)

    return app


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
    if fhir is not None:
        return json_response(fhir(rid), rid, content_type=FHIR_JSON)
    body = {"model": entry.info(), "request_id": rid, **result}
    body["warnings"] = warnings_for(entry, result.get("warnings"))
    return json_response(body, rid)


def record_distribution(entry: Any, values: dict[str, float]) -> None:
    """One prediction-distribution datapoint (``PositiveShare`` / ``MeanScore``, per ``ModelId``).

    Each is the share of positive labels (or the mean score) over one window of the live
    version's predictions (:mod:`medserve.distribution`): aggregates only, never an input.
    The canary's band alarms watch them per model (``SELECT AVG(...) FROM MedServe WHERE ModelId = ...``).
    """
    from aws_lambda_powertools.metrics import single_metric

    # A metric blob of its own: the ModelId dimension must not reach this request's other metrics
    # (the UnhandledErrors alarm watches those by service alone).
    for name, value in values.items():
        with single_metric(name=name, unit=MetricUnit.NoUnit, value=value, namespace=metrics.namespace) as metric:
            metric.add_dimension(name="ModelId", value=entry.id)


def finite(x: float) -> float:
    """A float that must be finite (model outputs); raise rather than emit NaN."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError("model produced a non-finite value")
    return value


def _unacceptable_get(event: dict[str, Any]) -> dict[str, Any] | None:
    """A 406 for a GET whose ``Accept`` allows no JSON (every GET route answers JSON); else ``None``.

    Predict routes negotiate for themselves (JSON, FHIR JSON, DICOM).
    """
    if (event.get("httpMethod") or "").upper() != "GET":
        return None
    accept = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "accept"), "") or ""
    if not accept.strip() or quality(accept, JSON) > 0.0:
        return None
    rid = (event.get("requestContext") or {}).get("requestId") or str(uuid.uuid4())
    problem = not_acceptable("this route answers application/json; the Accept header does not allow it")
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": PROBLEM_CONTENT_TYPE, "X-Request-Id": rid},
        "body": dumps(problem.to_dict(rid)),
        "isBase64Encoded": False,
    }


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
        app.answered_by = None
        head = (event.get("httpMethod") or "").upper() == "HEAD"
        if head:  # HEAD is answered as GET would be, without the body
            event = {**event, "httpMethod": "GET"}
        refused = _unacceptable_get(event)
        response = refused if refused is not None else app.resolve(event, context)
        if head:
            response = {**response, "body": "", "isBase64Encoded": False}
        digest, size = input_digest(event)
        audit.emit(
            audit.api_record(
                event,
                int(response.get("statusCode") or 500),
                app.answered_by,
                digest,
                size,
                (time.perf_counter() - start) * 1000,
                request_id=(response.get("headers") or {}).get("X-Request-Id"),
            )
        )
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
        if head:
            response = {**response, "body": "", "isBase64Encoded": False}
        return response

    return handler
