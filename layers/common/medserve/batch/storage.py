"""S3 access for the batch function: one lazily created, cached client and clear failure kinds.

The client is created on first use (not at import) so tests can patch AWS with moto
first; its region comes from ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and its endpoint
from boto3's own ``AWS_ENDPOINT_URL_S3`` (the local runner points it at its S3).

Failure kinds
-------------
- The object is gone (``NoSuchKey`` / 404): :class:`ObjectGone`, an outcome of its own.
- Anything else from S3 or the network (throttling ``SlowDown``, 5xx, timeouts,
  ``EndpointConnectionError``, and also ``AccessDenied``) propagates: the SQS message
  is retried and, after ``maxReceiveCount`` receives, lands in the DLQ. Nothing is
  dropped. :func:`is_infrastructure` (transient, or access denied) tells the worker
  which failures must keep raising on the last receive (to reach the alarmed DLQ)
  rather than becoming a 500 problem document.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

_CLIENT: Any = None
_LOCK = threading.Lock()

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "502",
        "504",
        "PriorRequestNotComplete",
        "PreconditionFailed",  # the object changed between HEAD and GET: read it again
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "403",
    }
)


class ObjectGone(Exception):
    """The input object no longer exists (deleted after its notification was sent)."""


class ObjectTooLarge(Exception):
    """The object grew past the limit between HEAD and GET."""


class ObjectStore(Protocol):
    """The whole of S3 that MedServe's batch uses: four calls, with boto3's names and shapes.

    The real one is a boto3 S3 client (:func:`client`); tests also run the batch logic on an
    in-memory one (``tests/fakes.py``) through :func:`use_client`. Errors are botocore
    ``ClientError`` s with S3's codes (``NoSuchKey``/``404``, ``PreconditionFailed``).
    """

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...  # noqa: N803

    def get_object(self, *, Bucket: str, Key: str, **conditions: str) -> dict[str, Any]: ...  # noqa: N803

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str, **extra: Any) -> dict[str, Any]: ...  # noqa: N803

    def delete_object(self, *, Bucket: str, Key: str, **conditions: str) -> dict[str, Any]: ...  # noqa: N803


def use_client(store: ObjectStore | None) -> None:
    """Serve every storage call from ``store`` (``None``: back to the lazily created boto3 client)."""
    global _CLIENT
    with _LOCK:
        _CLIENT = store


def client() -> Any:
    """The S3 client, created once per container on first use."""
    global _CLIENT
    if _CLIENT is None:
        with _LOCK:
            if _CLIENT is None:
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                config = Config(
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=5,
                    read_timeout=30,
                    s3={"addressing_style": "path"} if os.environ.get("AWS_ENDPOINT_URL_S3") else None,
                )
                _CLIENT = boto3.client("s3", region_name=region, config=config)
    return _CLIENT


def reset_client() -> None:
    """Forget the cached client (tests create a new one inside each moto mock)."""
    global _CLIENT
    with _LOCK:
        _CLIENT = None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (or the exception's class name)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """True for throttling, 5xx, timeouts and connection failures (worth retrying as is)."""
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError):
        return True
    if isinstance(exc, WriteConflict):  # concurrent deliveries of one key: the retry settles it
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(exc, BotoCoreError | TimeoutError | ConnectionError)


def is_infrastructure(exc: BaseException) -> bool:
    """Transient (:func:`is_transient`) or access denied: not MedServe's bug, and not the object's fault.

    Such failures raise on every receive, so a message that never succeeds lands in
    the DLQ (alarmed) instead of getting a 500 document it may not even be allowed
    to write.
    """
    if is_transient(exc):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error_code(exc) in ACCESS_CODES or status == 403
    return False


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in _MISSING_CODES


def head(bucket: str, key: str) -> dict[str, Any]:
    """``HeadObject``: ``{"etag", "size", "version_id"}``; :class:`ObjectGone` when absent."""
    try:
        meta = client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            raise ObjectGone from exc
        raise
    return {
        "etag": str(meta.get("ETag", "")).strip('"'),
        "size": int(meta.get("ContentLength", 0)),
        "version_id": meta.get("VersionId"),
    }


def get(bucket: str, key: str, *, etag: str, max_bytes: int) -> bytes:
    """``GetObject`` of exactly the version that was HEADed (``IfMatch``), at most ``max_bytes``."""
    try:
        extra = {"IfMatch": f'"{etag}"'} if etag else {}
        response = client().get_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        if _missing(exc):
            raise ObjectGone from exc
        raise
    body = response["Body"]
    try:
        data: bytes = body.read(max_bytes + 1)
    finally:
        body.close()
    if len(data) > max_bytes:
        raise ObjectTooLarge
    return data


def put_json(bucket: str, key: str, document: dict[str, Any], *, content_type: str) -> None:
    """Write a JSON document as ASCII (every string, even a lone surrogate, escaped); non-finite floats refused."""
    body = json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def put_bytes(bucket: str, key: str, data: bytes, *, content_type: str) -> None:
    """Write an object's bytes as they are (e.g. a DICOM SR beside its JSON result)."""
    client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def delete_if_present(bucket: str, key: str) -> bool:
    """Delete ``key`` when it exists (no delete marker is left for keys that never existed)."""
    if not exists(bucket, key):
        return False
    client().delete_object(Bucket=bucket, Key=key)
    return True


def exists(bucket: str, key: str) -> bool:
    """Whether ``key`` exists (``HeadObject``)."""
    try:
        client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            return False
        raise
    return True


# --- conditional writes: one outcome per input key, that of its latest version ---------------
_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class WriteConflict(Exception):
    """A conditional write or delete lost a race (``PreconditionFailed`` / ``ConditionalRequestConflict``)."""


def head_metadata(bucket: str, key: str) -> tuple[str, dict[str, str]] | None:
    """``(etag, user metadata)`` of ``key``, or ``None`` when it does not exist."""
    try:
        meta = client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return str(meta.get("ETag", "")).strip('"'), dict(meta.get("Metadata") or {})


def put_json_if(
    bucket: str,
    key: str,
    document: dict[str, Any],
    *,
    content_type: str,
    metadata: dict[str, str],
    if_match: str | None,
) -> str:
    """:func:`put_json` only over the version seen (``IfMatch``), or only where none exists
    (``IfNoneMatch: *``); returns the new ETag. :class:`WriteConflict` when it changed meanwhile."""
    body = json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    condition = {"IfMatch": f'"{if_match}"'} if if_match else {"IfNoneMatch": "*"}
    try:
        out = client().put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata, **condition
        )
    except ClientError as exc:
        if error_code(exc) in _CONFLICT_CODES:
            raise WriteConflict from exc
        raise
    return str(out.get("ETag", "")).strip('"')


def delete_if_match(bucket: str, key: str, etag: str) -> bool:
    """Delete ``key`` only if it is still the version ``etag``; ``False`` when it changed or is gone."""
    try:
        client().delete_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    except ClientError as exc:
        if error_code(exc) in _CONFLICT_CODES or _missing(exc):
            return False
        raise
    return True
