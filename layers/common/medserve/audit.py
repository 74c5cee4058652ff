"""One FHIR R4 ``AuditEvent`` per prediction or refused request, without patient data.

What a record holds: when (``recorded``), the request id, who called (the IAM
principal from API Gateway's request context; batch: the S3 event's
``userIdentity.principalId``), what was called (the route's resource template,
never the raw path; batch: the sha256 of the object key), the model (id, version,
sha256), the input (sha256 and size of the bytes, never the bytes), the outcome
(HTTP status mapped to ``AuditEvent.outcome`` 0/4/8/12, and ``outcomeDesc`` naming
the status only) and the latency. Nothing the caller sent (body, headers, query,
path values, user agent, source address, S3 key) is copied in; only plain model
identifiers of a registered model.

Sink (:func:`emit`): one JSON line per record on stdout through the dedicated
logger ``medserve.audit``, ``{"audit": true, "resource": <AuditEvent>}``: deployed,
a CloudWatch Logs subscription filter ``{ $.audit IS TRUE }`` sends these lines
to Firehose and a write-once (Object Lock) bucket. Locally, when
``MEDSERVE_AUDIT_FILE`` names a file (the local runner sets ``.local/audit.jsonl``),
each AuditEvent is also appended to it, one JSON object a line, ready to load into
a FHIR server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

LOGGER_NAME = "medserve.audit"
AUDIT_FILE_ENV = "MEDSERVE_AUDIT_FILE"
SYSTEM = "https://medserve.dev/fhir"
"""Base of MedServe's identifier systems."""
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_ROUTE = re.compile(r"^/[A-Za-z0-9_./{}+-]{0,200}$")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=,-]{0,255}$")
_LOCK = threading.Lock()

OUTCOME_TEXT = {"0": "Success", "4": "Minor failure", "8": "Serious failure", "12": "Major failure"}


class _StdoutHandler(logging.Handler):
    """Writes each record as one line to the current ``sys.stdout`` (Lambda sends it to CloudWatch Logs)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)


def _logger() -> logging.Logger:
    log = logging.getLogger(LOGGER_NAME)
    if not getattr(log, "_medserve_audit", False):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.handlers = [handler]
        log.setLevel(logging.INFO)
        log.propagate = False  # one line, not also a Powertools/Lambda-formatted copy
        log._medserve_audit = True  # type: ignore[attr-defined]
    return log


_AUDIT_LOG = _logger()


def outcome(status: int) -> tuple[str, str]:
    """``AuditEvent.outcome`` and ``outcomeDesc`` of an HTTP status.

    Below 400 is 0 (success); 4xx, the caller's error, is 4 (minor failure); 500, a
    bug in MedServe by the house rules, is 12 (major failure); any other 5xx
    (timeouts, throttling, a dependency down) is 8 (serious failure).
    """
    if status < 400:
        code = "0"
    elif status < 500:
        code = "4"
    elif status == 500:
        code = "12"
    else:
        code = "8"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = OUTCOME_TEXT[code]
    return code, f"HTTP {status} {phrase}"


def now() -> str:
    """The current instant, millisecond precision, UTC (FHIR ``instant``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_hex(data: bytes | str) -> str:
    """Hex sha256 of bytes (a str is hashed as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data).hexdigest()


def _plain(value: Any) -> str | None:
    """A value set by AWS (ARN, principal id, account id) if it looks like one, else ``None``."""
    return value if isinstance(value, str) and _PLAIN_ID.match(value) else None


def _detail(kind: str, value: Any) -> dict[str, str]:
    return {"type": kind, "valueString": str(value)}


def _caller_agent(principal: str | None, alt: str | None, account: str | None) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "requestor": True,
    }
    if principal:
        agent["who"] = {"identifier": {"system": f"{SYSTEM}/aws-principal", "value": principal}}
    else:
        agent["who"] = {"display": "no IAM principal in the request (unauthenticated route or local run)"}
    if alt and alt != principal:
        agent["altId"] = alt
    if account:
        agent["name"] = f"AWS account {account}"
    return agent


def _model_parts(entry: Any | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The model as a performing agent and as an entity (id, version, sha256)."""
    if entry is None:
        return [], []
    agent = {
        "type": {"coding": [{"system": _DCM, "code": "110150", "display": "Application"}]},
        "who": {"identifier": {"system": f"{SYSTEM}/model-id", "value": entry.id}, "display": entry.id},
        "requestor": False,
    }
    entity = {
        "what": {"identifier": {"system": f"{SYSTEM}/model-id", "value": entry.id}},
        "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        "name": "model",
        "detail": [_detail("version", entry.version), _detail("sha256", entry.sha256)],
    }
    return [agent], [entity]


def record(
    *,
    kind: str,
    request_id: str,
    status: int,
    caller: dict[str, Any],
    entry: Any | None,
    input_sha256: str | None,
    input_size: int | None,
    latency_ms: float,
    request_details: list[dict[str, str]],
    source: str,
    recorded: str | None = None,
) -> dict[str, Any]:
    """Assemble one AuditEvent (see :func:`api_record` and :func:`batch_record`)."""
    code, desc = outcome(status)
    model_agents, model_entities = _model_parts(entry)
    entities: list[dict[str, Any]] = [
        {
            "what": {"identifier": {"system": f"{SYSTEM}/request", "value": request_id}},
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "name": kind,
            "detail": [*request_details, _detail("latency_ms", f"{latency_ms:.3f}")],
        },
        *model_entities,
    ]
    if input_sha256 is not None:
        entities.append(
            {
                "what": {"identifier": {"system": f"{SYSTEM}/input-sha256", "value": f"sha256:{input_sha256}"}},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "name": "input",
                "detail": [_detail("size_bytes", input_size if input_size is not None else "unknown")],
            }
        )
    type_coding = (
        {"system": _AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"}
        if kind == "api"
        else {"system": _DCM, "code": "110100", "display": "Application Activity"}
    )
    return {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": type_coding,
        "subtype": [{"system": f"{SYSTEM}/audit-subtype", "code": "predict", "display": "prediction request"}],
        "action": "E",
        "recorded": recorded or now(),
        "outcome": code,
        "outcomeDesc": desc,
        "agent": [_caller_agent(**caller), *model_agents],
        "source": {
            "observer": {"display": source},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }


def _measured(entry: Any | None, input_sha256: str | None, input_size: int | None, latency_ms: float) -> dict[str, Any]:
    """What every record carries about the model and the input, as :func:`record` takes it."""
    return {"entry": entry, "input_sha256": input_sha256, "input_size": input_size, "latency_ms": latency_ms}


def _observer(kind: str) -> str:
    """``AuditEvent.source.observer``: which MedServe function recorded it (``local`` under ``make run``)."""
    return f"MedServe {kind} ({os.environ.get('AWS_LAMBDA_FUNCTION_NAME') or 'local'})"


def _route(event: dict[str, Any]) -> str:
    """The resource template of the route (``/v1/imaging/{model_id}/predict``), never the raw path."""
    resource = event.get("resource")
    return resource if isinstance(resource, str) and _ROUTE.match(resource) else "unmatched"


def api_record(
    event: dict[str, Any],
    status: int,
    entry: Any | None,
    input_sha256: str | None,
    input_size: int | None,
    latency_ms: float,
    *,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The AuditEvent of one API Gateway (REST) request; emit it with :func:`emit`."""
    ctx = event.get("requestContext") or {}
    identity = ctx.get("identity") or {}
    method = event.get("httpMethod")
    details = [_detail("route", _route(event))]
    if isinstance(method, str) and method.isalpha() and len(method) <= 10:
        details.insert(0, _detail("method", method.upper()))
    details.append(_detail("status", status))
    return record(
        kind="api",
        request_id=str(request_id or _plain(ctx.get("requestId")) or uuid.uuid4()),
        status=status,
        caller={
            "principal": _plain(identity.get("userArn")) or _plain(identity.get("caller")),
            "alt": _plain(identity.get("caller")),
            "account": _plain(identity.get("accountId")) or _plain(ctx.get("accountId")),
        },
        **_measured(entry, input_sha256, input_size, latency_ms),
        request_details=details,
        source=_observer("API"),
    )


def s3_source(record_: dict[str, Any]) -> dict[str, Any]:
    """The audit-relevant parts of one S3 event record: the key's sha256 and the principal."""
    s3 = record_.get("s3") or {}
    key = ((s3.get("object") or {}).get("key")) or ""
    return {
        "key_sha256": sha256_hex(key),
        "principal": _plain((record_.get("userIdentity") or {}).get("principalId")),
    }


def batch_record(
    source: dict[str, Any],
    status: int,
    entry: Any | None,
    input_sha256: str | None,
    input_size: int | None,
    latency_ms: float,
    *,
    request_id: str,
    row: int | None = None,
) -> dict[str, Any]:
    """The AuditEvent of one batch row (or a whole object); emit it with :func:`emit`."""
    details = [_detail("object_key_sha256", source.get("key_sha256") or sha256_hex(source.get("key", "")))]
    if row is not None:
        details.append(_detail("row", int(row)))
    details.append(_detail("status", status))
    return record(
        kind="batch",
        request_id=request_id,
        status=status,
        caller={"principal": _plain(source.get("principal")), "alt": None, "account": None},
        **_measured(entry, input_sha256, input_size, latency_ms),
        request_details=details,
        source=_observer("batch"),
    )


_suppressed = False


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """No record is written inside (the SnapStart warm-up's own golden requests are not requests)."""
    global _suppressed
    previous, _suppressed = _suppressed, True
    try:
        yield
    finally:
        _suppressed = previous


def emit(rec: dict[str, Any]) -> None:
    """Write one record: a JSON line on stdout (``medserve.audit``), and to ``$MEDSERVE_AUDIT_FILE`` if set."""
    if _suppressed:
        return
    resource = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    _AUDIT_LOG.info('{"audit":true,"resource":%s}', resource)
    path = os.environ.get(AUDIT_FILE_ENV)
    if path:
        with _LOCK:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a", encoding="utf-8") as fh:
                fh.write(resource + "\n")
