"""Exceptions raised by :class:`medserve_client.Client`; each says what happened and what to do."""

from __future__ import annotations

from typing import Any

LAMBDA_SYNC_PAYLOAD_LIMIT = 6_291_456
"""Lambda's synchronous payload limit (6 MB) in bytes, as Lambda receives the body (binary: base64)."""


class MedServeError(Exception):
    """Any failure talking to MedServe.

    Attributes
    ----------
    problem
        The RFC 9457 problem document the API answered (``{}`` when there was none).
    status
        The HTTP status (``None`` when no answer came back).
    hint
        What the user can do about it (``""`` when there is nothing to add).
    """

    def __init__(
        self, message: str, *, problem: dict[str, Any] | None = None, status: int | None = None, hint: str = ""
    ):
        super().__init__(message)
        self.problem: dict[str, Any] = dict(problem or {})
        self.status = status
        self.hint = hint

    @property
    def title(self) -> str:
        """The problem's title, or the message."""
        return str(self.problem.get("title") or self)

    @property
    def field_errors(self) -> list[dict[str, Any]]:
        """The problem's ``errors`` (``[{"field", "message"}]``), empty when there are none."""
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class ProblemError(MedServeError):
    """The API answered an ``application/problem+json`` error (4xx or 5xx)."""


class NotFoundError(ProblemError):
    """404: unknown model, version or route."""


class PayloadTooLargeError(MedServeError):
    """The body exceeds what the synchronous API takes (checked before sending, or a 413)."""


class EndpointUnreachableError(MedServeError):
    """No HTTP answer: the endpoint is down, the name does not resolve, or the request timed out."""


class NoCredentialsError(MedServeError):
    """A signed request was needed and the standard AWS credential chain found no credentials."""


class AccessDeniedError(MedServeError):
    """403 from API Gateway's IAM authorizer (unsigned, badly signed, expired, or not allowed)."""


class InputFileError(MedServeError):
    """A local input file cannot be read or turned into a request."""
