"""One SQS message (an S3 event notification) -> exactly one outcome document per object.

For an object at ``incoming/<model_id>/<name>``:

1. ``HeadObject``: its size is checked against ``MEDSERVE_BATCH_MAX_BYTES`` before
   anything is downloaded; ``GetObject`` then reads that same version (``If-Match``).
2. The model is looked up in the registry (every task's sessions are loaded at init,
   so one function serves every model and a new model needs no code).
3. The model's task reads and predicts the object (:meth:`medserve.tasks.base.Task.batch`).
4. The outcome is written: ``results/<model_id>/<name>.json`` or a problem document
   at ``errors/<model_id>/<name>.json``. **Exactly one outcome**: after writing one,
   a stale document of the other kind for the same name is deleted (write first, then
   delete, so there is never a moment with none). Both keys derive from the input key
   alone, so a redelivered message rewrites the same document.

What is *not* an outcome: ``s3:TestEvent`` messages, events other than
``ObjectCreated:*`` and zero-byte "folder" keys ending in ``/`` are acknowledged and
skipped. An object deleted before it was read gets a 404 problem document unless it
already has an outcome (a late duplicate must not replace a good result).

What is retried: any failure that is not the object's fault raises, so SQS
redelivers the message. Infrastructure failures (S3 throttling, 5xx, timeouts,
access denied: :func:`medserve.batch.storage.is_infrastructure`) raise on every
receive and, after ``maxReceiveCount`` receives, land in the DLQ (alarmed). Any
other failure (a bug, a non-finite model output, a document that cannot be
written) is retried too, but on the last receive (``ApproximateReceiveCount`` >=
``MEDSERVE_BATCH_MAX_RECEIVES``, = the queue's ``maxReceiveCount``) it becomes a 500
problem document instead, so the object still gets its one outcome. A message body
that is not an S3 notification raises too, so it ends in the DLQ rather than
vanishing.

Logs carry the model id (only when it names a served model), a sha256 prefix of the
key (never the key: keys may hold patient names), sizes, row counts and the outcome.
A failure is logged as its type and traceback frames (``file:line:function``), never
its message: exception texts from the standard library, NumPy or botocore can quote
values.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote_plus

from medserve import audit, tasks
from medserve.batch import outcomes, storage
from medserve.batch.keys import ObjectKey, is_folder_marker, key_hash, parse_key
from medserve.batch.rows import problem_body
from medserve.problems import PROBLEM_CONTENT_TYPE, Problem, frames, not_found, payload_too_large, unprocessable
from medserve.registry import ID_PATTERN, ModelEntry, Registry

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_RECEIVES = 3
JSON_CONTENT_TYPE = "application/json"


class _Logger(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...  # pragma: no cover

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...  # pragma: no cover

    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...  # pragma: no cover


class _Metrics(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> Any: ...  # pragma: no cover


INTERNAL_DETAIL = "MedServe could not process this object; this is our bug"


class NotAnS3Notification(ValueError):
    """An SQS body that is neither an S3 event notification nor an ``s3:TestEvent``."""


class RetryMessage(Exception):
    """Raised (after logging) to have SQS redeliver the message; its text is only the error type.

    The original exception is its ``__cause__``; its message is never logged or
    returned, since it may quote values.
    """


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """What is logged about a failure: its type and traceback frames, never its message."""
    return {"error_type": type(exc).__name__, "frames": frames(exc)}


@dataclass(frozen=True)
class Settings:
    """The batch function's configuration (read once at init)."""

    output_bucket: str
    max_bytes: int = DEFAULT_MAX_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    max_receives: int = DEFAULT_MAX_RECEIVES

    @classmethod
    def from_env(cls) -> Settings:
        """``MEDSERVE_OUTPUT_BUCKET`` (required), ``MEDSERVE_BATCH_MAX_BYTES``, ``MEDSERVE_BATCH_MAX_ROWS``,
        ``MEDSERVE_BATCH_MAX_RECEIVES`` (the queue's ``maxReceiveCount``, default 3)."""
        bucket = os.environ.get("MEDSERVE_OUTPUT_BUCKET", "")
        if not bucket:
            raise RuntimeError("MEDSERVE_OUTPUT_BUCKET is not set")
        return cls(
            output_bucket=bucket,
            max_bytes=int(os.environ.get("MEDSERVE_BATCH_MAX_BYTES", DEFAULT_MAX_BYTES)),
            max_rows=int(os.environ.get("MEDSERVE_BATCH_MAX_ROWS", DEFAULT_MAX_ROWS)),
            max_receives=max(1, int(os.environ.get("MEDSERVE_BATCH_MAX_RECEIVES", DEFAULT_MAX_RECEIVES))),
        )


def process(entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
    """The task part of an object's result document: the model's task reads and predicts it."""
    return tasks.get(entry.task).batch(entry, data, name, max_rows=max_rows)


@dataclass
class Outcome:
    """What happened to one object (or one skipped record)."""

    kind: str  # "result" | "error" | "skipped" | "kept" | "superseded" (a newer version's outcome wins)
    output_key: str | None = None
    status: int | None = None
    reason: str | None = None
    log: dict[str, Any] = field(default_factory=dict)


def _superseded() -> Outcome:
    return Outcome("superseded", reason="a newer version of the object was uploaded; its outcome is written instead")


def _key_notes(where: ObjectKey) -> list[str]:
    """The note a document carries when its key is a hashed name (the derived key was too long for S3)."""
    if not where.hashed:
        return []
    return [
        "the input key is too long for its outcome key (S3 keys are at most 1,024 bytes): this document "
        "is named sha256-<sha256 of the input key, UTF-8, hex>.json; source.key is the input key"
    ]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BatchWorker:
    """Turns S3 notifications into result or problem documents in the output bucket.

    Parameters
    ----------
    registry
        Every served model, sessions loaded.
    settings
        Output bucket and limits.
    logger, metrics
        Powertools (or compatible) logger and metrics; optional.
    """

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        *,
        logger: _Logger | None = None,
        metrics: _Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.logger = logger
        self.metrics = metrics

    # -- messages ------------------------------------------------------------------
    def handle_message(self, message_id: str, body: str, *, receive_count: int = 1) -> list[Outcome]:
        """Process every S3 record of one SQS message body; raise :class:`RetryMessage` to have it retried.

        Parameters
        ----------
        message_id
            The SQS message id (the documents' ``request_id``).
        body
            The SQS message body (an S3 event notification).
        receive_count
            SQS ``ApproximateReceiveCount``: on the last receive a failure that is not
            the infrastructure's becomes a 500 problem document.
        """
        try:
            return self._handle_message(message_id, body, receive_count)
        except RetryMessage:
            raise  # logged where it happened
        except Exception as exc:
            if self.logger is not None:
                self.logger.error(
                    "batch message failed; it will be retried",
                    extra={"message_id": message_id, "receive_count": receive_count, **failure_fields(exc)},
                )
            raise RetryMessage(type(exc).__name__) from exc

    def _handle_message(self, message_id: str, body: str, receive_count: int) -> list[Outcome]:
        try:
            event = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise NotAnS3Notification("the SQS message body is not JSON") from exc
        if not isinstance(event, dict):
            raise NotAnS3Notification("the SQS message body is not a JSON object")
        if event.get("Event") == "s3:TestEvent":
            self._log({"outcome": "skipped", "reason": "s3:TestEvent", "message_id": message_id})
            return [Outcome("skipped", reason="s3:TestEvent")]
        records = event.get("Records")
        if not isinstance(records, list) or not records:
            raise NotAnS3Notification("the SQS message body has no S3 event Records")
        return [self.handle_record(message_id, record, receive_count=receive_count) for record in records]

    def handle_record(self, message_id: str, record: dict[str, Any], *, receive_count: int = 1) -> Outcome:
        """One S3 event record (``eventSource`` ``aws:s3``)."""
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            raise NotAnS3Notification("an event record is not from aws:s3")
        event_name = str(record.get("eventName", ""))
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        if not bucket or "key" not in obj:
            raise NotAnS3Notification("an S3 event record lacks the bucket or the key")
        key = unquote_plus(str(obj["key"]))
        if not event_name.startswith("ObjectCreated:"):
            self._log({"outcome": "skipped", "reason": "not ObjectCreated", "message_id": message_id})
            return Outcome("skipped", reason=event_name)
        if is_folder_marker(key, obj.get("size")):
            self._log({"outcome": "skipped", "reason": "folder marker", "message_id": message_id})
            return Outcome("skipped", reason="folder marker")
        principal = (record.get("userIdentity") or {}).get("principalId")
        return self.handle_object(bucket, key, message_id=message_id, receive_count=receive_count, principal=principal)

    # -- one object ----------------------------------------------------------------
    def handle_object(
        self, bucket: str, key: str, *, message_id: str, receive_count: int = 1, principal: str | None = None
    ) -> Outcome:
        """Read, predict and write the one outcome of ``s3://bucket/key`` (see the module docstring).

        A final outcome (a result or an error document) leaves one audit record for the object.
        """
        started = time.perf_counter()
        data: bytes | None = None
        where = parse_key(key)
        source: dict[str, Any] = {"bucket": bucket, "key": key, "etag": None, "size": None}
        entry: ModelEntry | None = None
        log: dict[str, Any] = {"message_id": message_id, "key_sha256": key_hash(key), "model_id": None}
        try:
            try:
                try:
                    if not where.well_formed:
                        raise self._misplaced()
                    meta = storage.head(bucket, key)  # first, so every document names what it is about
                    source.update(etag=meta["etag"], size=meta["size"])
                    if meta.get("version_id") not in (None, "null"):
                        source["version_id"] = meta["version_id"]
                    log["size"] = meta["size"]
                    entry = self._entry(where)
                    log["model_id"] = entry.id
                    if meta["size"] > self.settings.max_bytes:
                        raise self._too_large(meta["size"])
                    try:
                        data = storage.get(bucket, key, etag=meta["etag"], max_bytes=self.settings.max_bytes)
                    except storage.ObjectTooLarge:
                        raise self._too_large(None) from None
                    body = process(entry, data, where.name, max_rows=self.settings.max_rows)
                except Problem as problem:
                    outcome = self._write_error(where, source, entry, problem, message_id)
                else:
                    outcome = self._write_result(where, source, entry, body, message_id)
                    log.update(format=body.get("format"), **{f"rows_{k}": v for k, v in body["summary"].items()})
            except storage.ObjectGone:
                return self._gone(where, source, entry, log, started)
        except Exception as exc:
            outcome = self._failed(exc, where, source, entry, log, started, receive_count)
        log.update(outcome.log)
        log.update(outcome=outcome.kind, status=outcome.status)
        log["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        self._log(log)
        if outcome.kind in ("result", "error"):
            audit.emit(
                audit.batch_record(
                    {"key": key, "principal": principal},
                    outcome.status or 500,
                    entry,
                    audit.sha256_hex(data) if data is not None else None,
                    len(data) if data is not None else None,
                    log["duration_ms"],
                    request_id=message_id,
                )
            )
        return outcome

    @staticmethod
    def _misplaced() -> Problem:
        return unprocessable(
            [("key", "must be incoming/<model_id>/<name>")],
            detail="the object is not at incoming/<model_id>/<name>, so no model can be chosen",
        )

    def _entry(self, where: ObjectKey) -> ModelEntry:
        """The model (and version) the key names; 404 (not echoing an odd segment) if unknown."""
        if not ID_PATTERN.match(where.model_id):
            known = ", ".join(e.id for e in self.registry.entries()) or "none"
            raise not_found(f"the key's model segment is not a model id; available: {known}")
        return self.registry.get(where.model_id, version=where.version)

    def _failed(
        self,
        exc: Exception,
        where: ObjectKey,
        source: dict[str, Any],
        entry: ModelEntry | None,
        log: dict[str, Any],
        started: float,
        receive_count: int,
    ) -> Outcome:
        """Log a failure (type and frames only), then retry it, or on the last receive write a 500 document."""
        infrastructure = storage.is_infrastructure(exc)
        last = receive_count >= self.settings.max_receives
        log.update(
            error_type=type(exc).__name__,
            error_code=storage.error_code(exc),
            transient=infrastructure,
            receive_count=receive_count,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if infrastructure or not last:
            log["outcome"] = "retry"
            if infrastructure:
                self._warn(log)
            elif self.logger is not None:
                self.logger.error(
                    "batch object failed; the message will be retried", extra={**log, "frames": frames(exc)}
                )
            self._metric("BatchRetries", 1)
            raise RetryMessage(log["error_code"]) from exc
        if self.logger is not None:
            self.logger.error(
                "batch object failed on its last receive; writing a 500 problem document",
                extra={**log, "outcome": "error", "status": 500, "frames": frames(exc)},
            )
        problem = Problem(500, "Internal Server Error", INTERNAL_DETAIL)
        try:
            outcome = self._write_error(where, source, entry, problem, str(log["message_id"]))
        except Exception as write_exc:
            if self.logger is not None:
                self.logger.error(
                    "the 500 problem document could not be written; the message goes to the DLQ",
                    extra={"key_sha256": log["key_sha256"], **failure_fields(write_exc)},
                )
            raise RetryMessage(type(write_exc).__name__) from write_exc
        self._metric("BatchInternalErrors", 1)
        return outcome

    def _too_large(self, size: int | None) -> Problem:
        limit = self.settings.max_bytes
        what = f"{size:,} bytes" if size is not None else "larger than the limit"
        return payload_too_large(
            f"the object is {what}; at most {limit:,} bytes (MEDSERVE_BATCH_MAX_BYTES) are read. "
            "Split it into smaller files.",
            field="object",
        )

    def _write_result(
        self, where: ObjectKey, source: dict[str, Any], entry: ModelEntry, body: dict[str, Any], message_id: str
    ) -> Outcome:
        from medserve.api import warnings_for

        attachments: list[tuple[str, bytes, str]] = body.get("attachments", [])
        for row in body.get("results", []):
            if "error" in row:  # each row's problem is a whole problem: it carries the document's request id
                row["error"]["request_id"] = message_id
        document: dict[str, Any] = {
            "model": entry.info(),
            "request_id": message_id,
            "processed_at": _now(),
            "source": source,
            **{k: v for k, v in body.items() if k not in ("warnings", "attachments")},
            "warnings": warnings_for(entry, [*body.get("warnings", []), *_key_notes(where)]),
        }
        out = self.settings.output_bucket
        for suffix, data, content_type in attachments:
            storage.put_bytes(out, where.attachment_key(suffix), data, content_type=content_type)
        if not outcomes.write(source, out, where.result_key, where.error_key, document, content_type=JSON_CONTENT_TYPE):
            return _superseded()
        summary = body["summary"]
        self._metric("BatchObjects", 1)
        self._metric("BatchRows", summary["rows"])
        self._metric("BatchRowsFailed", summary["failed"])
        return Outcome("result", output_key=where.result_key, status=200)

    def _write_error(
        self,
        where: ObjectKey,
        source: dict[str, Any],
        entry: ModelEntry | None,
        problem: Problem,
        message_id: str,
    ) -> Outcome:
        document = {
            **problem_body(problem),
            "request_id": message_id,
            "processed_at": _now(),
            "model": entry.info() if entry is not None else None,
            "source": source,
        }
        if where.hashed:
            document["warnings"] = _key_notes(where)
        out = self.settings.output_bucket
        if not outcomes.write(
            source, out, where.error_key, where.result_key, document, content_type=PROBLEM_CONTENT_TYPE
        ):
            return _superseded()
        self._metric("BatchObjectErrors", 1)
        return Outcome("error", output_key=where.error_key, status=problem.status)

    def _gone(
        self,
        where: ObjectKey,
        source: dict[str, Any],
        entry: ModelEntry | None,
        log: dict[str, Any],
        started: float,
    ) -> Outcome:
        out = self.settings.output_bucket
        if storage.exists(out, where.result_key) or storage.exists(out, where.error_key):
            outcome = Outcome("kept", reason="object deleted; its earlier outcome is kept")
        else:
            problem = not_found("the object was deleted before it could be read; upload it again")
            outcome = self._write_error(where, source, entry, problem, str(log["message_id"]))
        log.update(outcome=outcome.kind, status=outcome.status, reason="object gone")
        log["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        self._log(log)
        return outcome

    # -- observability -------------------------------------------------------------
    def _log(self, fields: dict[str, Any]) -> None:
        if self.logger is not None:
            self.logger.info("batch object", extra=fields)

    def _warn(self, fields: dict[str, Any]) -> None:
        if self.logger is not None:
            self.logger.warning("batch object failed transiently; the message will be retried", extra=fields)

    def _metric(self, name: str, value: float) -> None:
        if self.metrics is not None:
            from aws_lambda_powertools.metrics import MetricUnit

            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
