"""The interface every task implements, and the request object the API hands it.

Following ``model_id`` through a request: the API looks the model up once
(:meth:`medserve.registry.Registry.get`), builds an :class:`HttpRequest`, and calls the
model's task: :meth:`Task.parse` (validate into arrays or a request object),
:meth:`Task.predict` (many at once: the one path the API and batch both call), then
:meth:`Task.fhir` when FHIR is asked for. Batch calls :meth:`Task.batch` per object.
The OpenAPI builder calls :meth:`Task.request_schema` / :meth:`Task.response_schema`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from medserve.jsonbody import loads
from medserve.problems import bad_request, unprocessable

if TYPE_CHECKING:  # pragma: no cover
    from medserve.registry import ModelEntry

TOO_DEEP = "the request body is nested too deeply to be read"
NOT_UTF8 = "the request body is not UTF-8 text; send JSON encoded as UTF-8"


def parse_json_text(raw: str | None) -> dict[str, Any]:
    """A request body as a JSON object: 400 when unreadable, 422 when not an object or a key repeats.

    Parsed by :func:`medserve.jsonbody.loads` (BOM dropped, duplicate keys a 422 naming them,
    huge integers left for the field rules). ``NaN``/``Infinity`` literals are parsed on
    purpose, so the field validation names them (422).
    """
    if raw is None or not raw.strip():
        raise bad_request("the request body is empty; send a JSON object", field="body")
    try:
        body = loads(raw)
    except RecursionError:
        raise bad_request(TOO_DEEP, field="body") from None
    except ValueError:
        raise bad_request("the request body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise unprocessable([("body", "must be a JSON object")])
    return body


@dataclass
class HttpRequest:
    """What a predict route received, read once by the API layer.

    Attributes
    ----------
    body
        The event body (base64 text when ``is_base64``).
    is_base64
        API Gateway's ``isBase64Encoded``.
    content_type
        The media type, lower case, without parameters (``""`` when absent).
    query
        Query parameters, less the ones the API layer consumed (``version``).
    """

    body: str | None
    is_base64: bool = False
    content_type: str = ""
    query: dict[str, str] = field(default_factory=dict)

    def raw_bytes(self) -> bytes:
        """The body as bytes (base64-decoded when flagged)."""
        if not self.body:
            return b""
        if self.is_base64:
            try:
                return base64.b64decode(self.body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise bad_request("the base64-encoded request body cannot be decoded", field="body") from exc
        return self.body.encode("utf-8", "surrogateescape")

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (see :func:`parse_json_text`)."""
        if self.is_base64:
            try:
                text = self.raw_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise bad_request(NOT_UTF8, field="body") from exc
        else:
            text = self.body or ""
        return parse_json_text(text)

    def reject_query(self, allowed: tuple[str, ...] = ()) -> None:
        """422 for any query parameter not in ``allowed`` (named only by place: ``query``)."""
        unknown = [k for k in self.query if k not in allowed]
        if unknown:
            n = len(unknown)
            raise unprocessable([("query", f"{n} unknown query parameter{'s' if n != 1 else ''}")])


class Task:
    """One kind of model. Subclasses set :attr:`name` and implement the methods below."""

    name: ClassVar[str]
    media_types: ClassVar[tuple[str, ...]] = ()
    """Response media types this task renders itself (:meth:`render`), besides JSON and FHIR JSON."""
    raw_content_types: ClassVar[tuple[str, ...]] = ()
    """Non-JSON request media types the predict route reads (the template lists them as binary)."""
    summary: ClassVar[str] = ""

    # --- spec ---------------------------------------------------------------------------
    def build_spec(self, entry: ModelEntry) -> Any:
        """What one model accepts and returns, read once from its manifest (``entry.spec`` caches it)."""
        raise NotImplementedError

    def detail(self, entry: ModelEntry) -> dict[str, Any]:
        """Task-specific members of ``GET /v1/models/{id}`` (e.g. the image or vitals block)."""
        return {k: entry.manifest[k] for k in (self.name, "image") if k in entry.manifest and k != "risk"}

    # --- API ----------------------------------------------------------------------------
    def parse(self, entry: ModelEntry, request: HttpRequest) -> Any:
        """Validate a request into what :meth:`predict` takes (a 4xx :class:`Problem` otherwise)."""
        raise NotImplementedError

    def predict(self, entry: ModelEntry, parsed: list[Any]) -> list[dict[str, Any]]:
        """Predict many parsed requests at once; one response body part each, in order."""
        raise NotImplementedError

    def fhir(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        """The FHIR R4 Bundle of one prediction."""
        raise NotImplementedError

    def renderable(self, parsed: Any, media_type: str) -> str | None:
        """Why ``parsed`` cannot be answered as ``media_type`` (a 406 detail), or ``None`` when it can."""
        return None

    def render(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], media_type: str) -> tuple[bytes, str]:
        """``(body, content type)`` of a prediction in one of :attr:`media_types`."""
        raise NotImplementedError

    def unexplained(self, parsed: Any) -> Any:
        """``parsed`` with no explanation asked (shadow scoring predicts, never explains)."""
        import dataclasses

        if dataclasses.is_dataclass(parsed) and not isinstance(parsed, type) and hasattr(parsed, "explain"):
            return dataclasses.replace(parsed, explain=False)
        return parsed

    def scores(self, entry: ModelEntry, result: dict[str, Any]) -> list[tuple[str | None, float]]:
        """``(label, score)`` of each prediction in one answer: the label (``None`` for a regression)
        and the positive-label probability or the predicted value. The band alarms' datapoints
        (:mod:`medserve.distribution`) and shadow scoring are computed from these."""
        raise NotImplementedError

    # --- Open Inference Protocol v2 ------------------------------------------------------------
    def check_tensors(self, entry: ModelEntry, tensors: dict[str, Any], fields: dict[str, str], errors: Any) -> None:
        """Add to ``errors`` (:class:`medserve.v2.Errors`) every tensor value outside the manifest's
        plausible ranges: the v2 route's twin of :meth:`parse`, on the ONNX model's own inputs."""

    # --- batch --------------------------------------------------------------------------
    def batch(self, entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
        """The task part of a batch result document for one object (a :class:`Problem` for the whole object)."""
        raise NotImplementedError

    # --- OpenAPI ------------------------------------------------------------------------
    def request_schema(self, entries: list[ModelEntry]) -> dict[str, Any]:
        """The ``requestBody.content`` of the predict route, built from the models' specs."""
        raise NotImplementedError

    def response_schema(self) -> dict[str, Any]:
        """The JSON Schema of a successful (JSON) prediction body's task part."""
        raise NotImplementedError

    def query_parameters(self) -> list[dict[str, Any]]:
        """OpenAPI query parameters the predict route reads besides ``version``."""
        return []
