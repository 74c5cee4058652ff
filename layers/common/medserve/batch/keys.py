"""The batch key layout: ``incoming/<model_id>[@<version>]/<name>`` in, ``results/`` or ``errors/`` out.

Output keys are derived from the input key alone, so a redelivered message rewrites
the same document (idempotent). Keys may hold patient names in the wild: logs carry
:func:`key_hash`, never the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

INCOMING = "incoming/"
RESULTS = "results/"
ERRORS = "errors/"
SUFFIX = ".json"
MAX_KEY_BYTES = 1024
"""S3's limit on a key, in UTF-8 bytes."""
HASHED_PREFIX = "sha256-"
"""Name of an outcome whose derived key would exceed :data:`MAX_KEY_BYTES`: ``sha256-<hex of the input key>``."""


@dataclass(frozen=True)
class ObjectKey:
    """An input key split into the model id and the name below it.

    Attributes
    ----------
    key
        The full (URL-decoded) input key.
    model_id
        The segment after ``incoming/`` up to an ``@`` (``""`` when the key has none).
    version
        The version pinned by ``incoming/<model_id>@<version>/<name>`` (``None``: the live one).
    name
        Everything after ``incoming/<model_id>/`` (may contain ``/``; ``""`` when absent).
    relative
        The key below ``incoming/`` (the whole key when it is not under ``incoming/``):
        the output keys are ``results/<relative>.json`` and ``errors/<relative>.json``.
    """

    key: str
    model_id: str
    name: str
    relative: str
    version: str | None = None

    @property
    def well_formed(self) -> bool:
        """True when the key is ``incoming/<model_id>/<name>`` with both parts non-empty."""
        return self.key.startswith(INCOMING) and bool(self.model_id) and bool(self.name)

    @property
    def result_key(self) -> str:
        """Where a result document goes."""
        return self._outcome_key(RESULTS)

    def attachment_key(self, suffix: str) -> str:
        """Where a file written beside the result goes: ``results/<relative, less .dcm><suffix>``."""
        if self.hashed:
            return self.result_key[: -len(SUFFIX)] + suffix
        stem = self.relative[: -len(".dcm")] if self.relative.lower().endswith(".dcm") else self.relative
        return f"{RESULTS}{stem}{suffix}"

    @property
    def error_key(self) -> str:
        """Where a problem document goes."""
        return self._outcome_key(ERRORS)

    @property
    def hashed(self) -> bool:
        """True when the outcome keys are hashed names (see :meth:`_outcome_key`)."""
        return _too_long(f"{RESULTS}{self.relative}{SUFFIX}") or _too_long(f"{ERRORS}{self.relative}{SUFFIX}")

    def _outcome_key(self, prefix: str) -> str:
        """``<prefix><relative>.json``, or, when that passes S3's 1,024-byte limit, the stable
        ``<prefix><model_id>/sha256-<sha256 of the input key>.json`` (the document says so)."""
        if not self.hashed:
            return f"{prefix}{self.relative}{SUFFIX}"
        digest = hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).hexdigest()
        folder = f"{self.model_id}/" if self.model_id and len(self.model_id) <= 64 else ""
        return f"{prefix}{folder}{HASHED_PREFIX}{digest}{SUFFIX}"


def parse_key(key: str) -> ObjectKey:
    """Split a URL-decoded object key (see :class:`ObjectKey`)."""
    if key.startswith(INCOMING):
        relative = key[len(INCOMING) :]
        segment, _, name = relative.partition("/")
        model_id, at, version = segment.partition("@")
        return ObjectKey(key=key, model_id=model_id, name=name, relative=relative, version=version if at else None)
    return ObjectKey(key=key, model_id="", name="", relative=key)


def _too_long(key: str) -> bool:
    return len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES


def is_folder_marker(key: str, size: int | None) -> bool:
    """A zero-byte ``.../`` object, as the S3 console's "Create folder" makes: not an input."""
    return key.endswith("/") and not size


def key_hash(key: str) -> str:
    """A log-safe stand-in for a key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
