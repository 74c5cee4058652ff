"""An in-memory S3 for batch tests: the four calls of :class:`medserve.batch.storage.ObjectStore`.

Versioned buckets (every put makes a version; HEAD and GET read the latest), S3's
conditional writes (``IfMatch`` / ``IfNoneMatch: *`` on put, ``IfMatch`` on delete and get)
and S3's error codes as botocore ``ClientError`` s, all behind one lock, so several
worker threads can race on it as they would on S3. Fast enough to run many deliveries
per test; moto checks the same logic against a fuller S3 in ``tests/integration``.
"""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError


def _error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@dataclass
class _Object:
    body: bytes
    content_type: str
    metadata: dict[str, str]
    version_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def etag(self) -> str:
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest() + "-" + self.version_id[:8]


class MemoryS3:
    """In-memory S3 (see the module notes). ``objects[(bucket, key)]`` is the latest version."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], _Object] = {}
        self._lock = threading.Lock()

    def _find(self, bucket: str, key: str, operation: str) -> _Object:
        obj = self.objects.get((bucket, key))
        if obj is None:
            raise _error("404" if operation == "HeadObject" else "NoSuchKey", 404, operation)
        return obj

    @staticmethod
    def _match(obj: _Object | None, if_match: str | None, operation: str) -> None:
        if if_match is not None and (obj is None or if_match.strip('"') != obj.etag):
            raise _error("PreconditionFailed", 412, operation)

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            obj = self._find(Bucket, Key, "HeadObject")
            return {
                "ETag": f'"{obj.etag}"',
                "ContentLength": len(obj.body),
                "VersionId": obj.version_id,
                "ContentType": obj.content_type,
                "Metadata": dict(obj.metadata),
            }

    def get_object(self, *, Bucket: str, Key: str, IfMatch: str | None = None) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            obj = self._find(Bucket, Key, "GetObject")
            self._match(obj, IfMatch, "GetObject")
            return {"Body": io.BytesIO(obj.body), "ETag": f'"{obj.etag}"', "ContentType": obj.content_type}

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Body: bytes,  # noqa: N803
        ContentType: str = "binary/octet-stream",  # noqa: N803
        Metadata: dict[str, str] | None = None,  # noqa: N803
        IfMatch: str | None = None,  # noqa: N803
        IfNoneMatch: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        with self._lock:
            current = self.objects.get((Bucket, Key))
            self._match(current, IfMatch, "PutObject")
            if IfNoneMatch == "*" and current is not None:
                raise _error("PreconditionFailed", 412, "PutObject")
            obj = _Object(bytes(Body), ContentType, dict(Metadata or {}))
            self.objects[(Bucket, Key)] = obj
            return {"ETag": f'"{obj.etag}"', "VersionId": obj.version_id}

    def delete_object(self, *, Bucket: str, Key: str, IfMatch: str | None = None) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            current = self.objects.get((Bucket, Key))
            if IfMatch is not None:
                if current is None:
                    raise _error("NoSuchKey", 404, "DeleteObject")
                self._match(current, IfMatch, "DeleteObject")
            self.objects.pop((Bucket, Key), None)
            return {}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key of ``bucket`` under ``prefix``, sorted."""
        with self._lock:
            return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))
