"""Imaging predictions: read the request, decode, run the model once, explain, report.

The ONNX graph of an imaging model has two outputs, ``probabilities`` ``[N, C]`` and
``cam`` ``[N, h, w]`` (the class activation map of the positive class, computed in
the graph), so an explanation costs no second pass: ``explain`` only decides
whether the map is rendered as a PNG.

Everything here is a pure function of bytes, flags and a :class:`ModelEntry`; the
task (:mod:`medserve.tasks.imaging`) calls :func:`read_raw` / :func:`read_json_body`
and :func:`predict`.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from medserve.fields import Field, Record
from medserve.problems import unprocessable, unsupported_media_type
from medserve.registry import ModelEntry
from medserve.tasks.base import HttpRequest
from medserve.tasks.imaging import RAW_CONTENT_TYPES
from medserve.tasks.imaging.decode import DecodedImage, ImageSpec, decode_image, resize, to_model_input

HEATMAP_MAX_SIDE = 512
"""Longest side of a returned heatmap, in pixels."""
_DECLARED_FORMAT = {"image/png": "png", "image/jpeg": "jpeg", "application/dicom": "dicom"}
_FORMAT_NAME = {"png": "PNG", "jpeg": "JPEG", "dicom": "DICOM"}


@dataclass(frozen=True)
class ImageRequest:
    """A parsed imaging request.

    Attributes
    ----------
    data
        The encoded image bytes.
    explain
        Whether to return the heatmap.
    field
        Where the bytes came from: ``"image"`` (JSON) or ``"body"`` (raw upload).
    declared
        The media type the caller declared for raw bytes (``None`` for JSON).
    """

    data: bytes
    explain: bool
    field: str
    declared: str | None = None


class ImagingSpec:
    """What one imaging model accepts and returns, precomputed from its manifest.

    The FHIR texts come from the manifest's optional ``fhir`` block,
    ``{"report_text": "AI analysis of a chest radiograph", "finding_text": "..."}``
    (``DiagnosticReport.code.text`` and the finding ``Observation.code.text``); without
    it they are built from the model id and labels, so a new model needs no code.
    """

    def __init__(self, entry: ModelEntry) -> None:
        m = entry.manifest
        self.image = ImageSpec.from_manifest(m)
        out = m["outputs"]
        self.labels: list[str] = list(out["labels"])
        self.positive: str = out.get("positive_label", self.labels[-1])
        self.negative: str = next(label for label in self.labels if label != self.positive)
        self.threshold = float(out.get("threshold", 0.5))
        self.input_name: str = m["onnx"]["inputs"][0]["name"]
        names = [o["name"] for o in m["onnx"]["outputs"]]
        self.prob_name = "probabilities" if "probabilities" in names else names[0]
        self.cam_name = "cam" if "cam" in names else None
        texts = m.get("fhir") or {}
        self.report_text: str = str(texts.get("report_text") or f"AI image analysis by the {entry.id} model")
        self.finding_text: str = str(
            texts.get("finding_text") or f"AI image classification by the {entry.id} model ({' vs '.join(self.labels)})"
        )


# --- request parsing ----------------------------------------------------------------------
def _flag(value: str | None, field: str) -> bool:
    if value is None:
        return False
    if value not in ("true", "false"):
        raise unprocessable([(field, "must be true or false")])
    return value == "true"


def _check_query(query: dict[str, str] | None, *, allow_explain: bool) -> None:
    unknown = [k for k in query or {} if k != "explain"]
    if unknown:
        raise unprocessable([("query", f"{len(unknown)} unknown query parameter(s); only explain is read")])
    if "explain" in (query or {}) and not allow_explain:
        raise unprocessable([("explain", "with a JSON body, set explain in the body, not the query")])


def read_raw(body: str | None, *, is_base64: bool, content_type: str, query: dict[str, str] | None) -> ImageRequest:
    """A raw upload (``image/png``, ``image/jpeg``, ``application/dicom``).

    Parameters
    ----------
    body
        The event body: base64 text when API Gateway flagged it ``isBase64Encoded``.
    is_base64
        The event's ``isBase64Encoded``.
    content_type
        The request media type (lower case, no parameters).
    query
        Query string parameters; only ``explain=true|false`` is accepted.
    """
    if content_type not in RAW_CONTENT_TYPES:
        raise unsupported_media_type(
            "this Content-Type is not accepted; send application/json or one of " + ", ".join(RAW_CONTENT_TYPES),
            field="header.content-type",
        )
    _check_query(query, allow_explain=True)
    explain = _flag((query or {}).get("explain"), "explain")
    if not body:
        raise unprocessable([("body", "is empty; send the image bytes")])
    data = HttpRequest(body, is_base64=is_base64).raw_bytes()
    return ImageRequest(data=data, explain=explain, field="body", declared=content_type)


JSON_BODY = Record(
    (
        Field("image", "base64", description="the PNG, JPEG or DICOM file, base64-encoded"),
        Field("explain", "boolean", required=False, default=False),
    )
)
"""The JSON request ``{"image": "<base64>", "explain": false}``: validation and schema."""


def read_json_body(body: dict[str, Any], query: dict[str, str] | None = None) -> ImageRequest:
    """A JSON request ``{"image": "<base64>", "explain": false}`` (already parsed to a dict)."""
    _check_query(query, allow_explain=False)
    errors: list[tuple[str, str]] = []
    JSON_BODY.check(body, "", errors)
    if errors:
        raise unprocessable(errors)
    try:
        data = base64.b64decode(body["image"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise unprocessable([("image", "is not valid base64")]) from exc
    if not data:
        raise unprocessable([("image", "decodes to zero bytes")])
    return ImageRequest(data=data, explain=bool(body.get("explain", False)), field="image")


def parse(request: HttpRequest) -> ImageRequest:
    """Any imaging request: raw bytes of a raw media type, else a JSON body."""
    if request.content_type in RAW_CONTENT_TYPES:
        return read_raw(
            request.body, is_base64=request.is_base64, content_type=request.content_type, query=request.query
        )
    return read_json_body(request.json(), request.query)


# --- prediction ---------------------------------------------------------------------------
def _round(x: float) -> float:
    value = float(x)
    if not math.isfinite(value):
        raise ValueError("model produced a non-finite value")
    return round(value, 6)


def heatmap(cam: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """Render a CAM grid as an 8-bit greyscale PNG at the input's aspect ratio.

    The positive part of the map (evidence FOR the positive class) is upsampled
    bilinearly and scaled so its maximum is 255 (all black when there is none). The
    size is the original image's, shrunk so that the long side is at most
    :data:`HEATMAP_MAX_SIDE`.

    Returns
    -------
    dict
        ``{"png": base64, "width": int, "height": int}``.
    """
    scale = min(1.0, HEATMAP_MAX_SIDE / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    positive = np.nan_to_num(np.maximum(np.asarray(cam, dtype=np.float32), 0.0), posinf=0.0)
    big = np.maximum(resize(positive, w, h), 0.0)
    top = float(big.max()) if big.size else 0.0
    big = big / top if top > 0 else np.zeros_like(big)
    buf = BytesIO()
    grey = Image.fromarray(np.round(big * 255.0).astype(np.uint8), mode="L")
    grey.save(buf, format="PNG", compress_level=3)
    return {"png": base64.b64encode(buf.getvalue()).decode("ascii"), "width": w, "height": h}


def _notes(image: DecodedImage, spec: ImagingSpec, declared: str | None) -> list[str]:
    notes = list(image.warnings)
    if declared is not None and _DECLARED_FORMAT.get(declared) != image.format:
        notes.append(
            f"Content-Type said {declared} but the bytes are {_FORMAT_NAME[image.format]}; "
            "decoded as what the bytes are"
        )
    aspect = image.width / image.height
    model_aspect = spec.image.width / spec.image.height
    if abs(math.log(aspect / model_aspect)) > math.log(1.25):
        notes.append(
            f"image aspect ratio {image.width}x{image.height} was squeezed to the model's "
            f"{spec.image.width}x{spec.image.height} input"
        )
    if image.width < spec.image.width or image.height < spec.image.height:
        notes.append(f"image is smaller than the model's {spec.image.width}x{spec.image.height} input and was upscaled")
    return notes


def predict_decoded(
    entry: ModelEntry, image: DecodedImage, *, explain: bool = False, declared: str | None = None
) -> dict[str, Any]:
    """Run the model once on a decoded image and build the contract's body.

    Returns
    -------
    dict
        ``{"prediction": {"label", "probabilities"}, "heatmap": None | {...}, "warnings": [...]}``.
    """
    spec: ImagingSpec = entry.spec
    x = to_model_input(image, spec.image)
    out = entry.run({spec.input_name: x})
    probs = np.asarray(out[spec.prob_name], dtype=np.float64).reshape(-1)
    if probs.shape[0] != len(spec.labels) or not np.all(np.isfinite(probs)):
        raise ValueError(f"{entry.id}: model output does not match its labels")
    by_label = {label: _round(p) for label, p in zip(spec.labels, probs.tolist(), strict=True)}
    p_pos = by_label[spec.positive]
    label = spec.positive if p_pos >= spec.threshold else spec.negative
    hm = None
    if explain and spec.cam_name is not None:
        hm = heatmap(np.asarray(out[spec.cam_name])[0], image.width, image.height)
    return {
        "prediction": {"label": label, "probabilities": by_label},
        "heatmap": hm,
        "warnings": _notes(image, spec, declared),
    }


def predict(entry: ModelEntry, request: ImageRequest) -> dict[str, Any]:
    """Decode the request's image for this model and predict (see :func:`predict_decoded`)."""
    spec: ImagingSpec = entry.spec
    image = decode_image(request.data, spec=spec.image, field=request.field)
    return predict_decoded(entry, image, explain=request.explain, declared=request.declared)
