"""RFC 9457 problem details: every error MedServe answers.

A :class:`Problem` is raised anywhere in the library and turned into an
``application/problem+json`` response by :mod:`medserve.api` (or into an error
document by the batch function). Bad input is the caller's error: 4xx, naming
the field. A 5xx means a bug in MedServe.
"""

from __future__ import annotations

import re
import traceback
from http import HTTPStatus
from typing import Any

PROBLEM_BASE = "https://medserve.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
MAX_ERRORS = 100
"""Most field errors a problem lists; the rest are counted in ``errors_omitted`` (responses stay small)."""

_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "unprocessable-content",
    500: "internal-error",
}


class Problem(Exception):
    """An error answer: HTTP status, title, detail and the fields at fault.

    Parameters
    ----------
    status
        HTTP status code (4xx for the caller's errors).
    title
        Short, stable summary of the problem type.
    detail
        Human-readable explanation of this occurrence. Never echo input values:
        they may be patient data.
    errors
        ``[{"field": ..., "message": ...}]`` where fields are at fault; only the first
        :data:`MAX_ERRORS` are kept, the rest counted in ``errors_omitted``.
    type_
        URI of the problem type; derived from the status when omitted.
    headers
        Extra response headers (e.g. ``Allow`` for 405).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = int(status)
        self.title = title
        self.detail = detail
        every = list(errors or [])
        self.errors = every[:MAX_ERRORS]
        self.errors_omitted = len(every) - len(self.errors)
        self.type = type_ or PROBLEM_BASE + _SLUGS.get(self.status, str(self.status))
        self.headers = dict(headers or {})

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        """Return the RFC 9457 body, with the request id and field errors."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "request_id": request_id,
        }
        if self.errors:
            body["errors"] = self.errors
        if self.errors_omitted:
            body["errors_omitted"] = self.errors_omitted
        return body

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.title!r}, {len(self.errors)} field errors)"


_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def unknown_key(parent: str, key: object) -> tuple[str, str]:
    """The ``(field, message)`` for an unknown key, echoing its name only when it is a plain identifier.

    A key is caller input: one like ``"Jane Doe 1970-01-01"`` may be patient data, so it
    is never repeated back (the field is then the parent, e.g. ``instances[3]``).
    """
    name = str(key)
    if _PLAIN_NAME.match(name):
        return (f"{parent}.{name}" if parent else name, "unknown field")
    return (parent or "body", "has an unknown field (its name is not repeated: not a plain identifier)")


def frames(exc: BaseException) -> list[str]:
    """``file:line:function`` of each traceback frame: where, without any message or values."""
    return [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)]


def _title(status: int) -> str:
    return HTTPStatus(status).phrase


def field_errors(errors: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Turn ``(field, message)`` pairs into the contract's error objects."""
    return [{"field": field, "message": message} for field, message in errors]


def bad_request(detail: str, field: str | None = None) -> Problem:
    """400: the body cannot be read at all."""
    errs = field_errors([(field, detail)]) if field else None
    return Problem(400, _title(400), detail, errors=errs)


def not_found(detail: str) -> Problem:
    """404: unknown model or route."""
    return Problem(404, _title(404), detail)


def method_not_allowed(method: str, allowed: list[str]) -> Problem:
    """405 with an ``Allow`` header."""
    allow = ", ".join(sorted(set(allowed)))
    return Problem(405, _title(405), f"{method} is not allowed here; allowed: {allow}", headers={"Allow": allow})


def not_acceptable(detail: str) -> Problem:
    """406: the ``Accept`` header allows nothing this route can produce for this input."""
    return Problem(406, _title(406), detail, errors=field_errors([("header.accept", detail)]))


def payload_too_large(detail: str, field: str | None = None) -> Problem:
    """413: the request or object exceeds a stated limit."""
    errs = field_errors([(field, detail)]) if field else None
    return Problem(413, "Payload Too Large", detail, errors=errs)


def unsupported_media_type(detail: str, field: str | None = None) -> Problem:
    """415: a content type or image format we do not read."""
    errs = field_errors([(field, detail)]) if field else None
    return Problem(415, _title(415), detail, errors=errs)


def unprocessable(errors: list[tuple[str, str]], detail: str | None = None) -> Problem:
    """422: readable but invalid; every offending field listed."""
    if detail is None:
        n = len(errors)
        detail = f"{n} invalid field{'s' if n != 1 else ''}; see errors"
    return Problem(422, "Unprocessable Content", detail, errors=field_errors(errors))
