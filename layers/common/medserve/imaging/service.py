"""Imaging predictions: read the request, decode, run the model once, explain, report.

The ONNX graph of an imaging model has two outputs, ``probabilities`` ``[N, C]`` and
``cam`` ``[N, h, w]`` (the class activation map of the positive class, computed in
the graph), so an explanation costs no second pass: ``explain`` only decides
whether the map is rendered as a PNG.

Everything here is a pure function of bytes, flags and a :class:`ModelEntry`; the
Lambda handler only reads the event and calls :func:`read_raw` / :func:`read_json_body`,
:func:`predict` and :func:`fhir_bundle`.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from medserve import fhir
from medserve.imaging.decode import DecodedImage, ImageSpec, decode_image, resize, to_model_input
from medserve.problems import bad_request, unknown_key, unprocessable, unsupported_media_type
from medserve.registry import ModelEntry

RAW_CONTENT_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "application/dicom")
"""Raw-body media types the imaging route reads (the template lists them as BinaryMediaTypes)."""
HEATMAP_MAX_SIDE = 512
"""Longest side of a returned heatmap, in pixels."""
_JSON_FIELDS = frozenset({"image", "explain"})
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


_SPECS: dict[tuple[str, str], ImagingSpec] = {}


def spec_for(entry: ModelEntry) -> ImagingSpec:
    """The cached :class:`ImagingSpec` of a model (built once per container)."""
    key = (entry.id, entry.version)
    if key not in _SPECS:
        _SPECS[key] = ImagingSpec(entry)
    return _SPECS[key]


# --- request parsing ----------------------------------------------------------------------
def _flag(value: str | None, field: str) -> bool:
    if value is None:
        return False
    if value not in ("true", "false"):
        raise unprocessable([(field, "must be true or false")])
    return value == "true"


def _check_query(query: dict[str, str] | None, *, allow_explain: bool) -> None:
    for key in sorted(query or {}):
        if key == "explain" and allow_explain:
            continue
        if key == "explain":
            raise unprocessable([("explain", "with a JSON body, set explain in the body, not the query")])
        # The name is caller input (it may be patient data): the place is named, never the key.
        raise unprocessable([("query", "has an unknown parameter; only explain=true|false is accepted")])


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
    if is_base64:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request("the base64-encoded request body cannot be decoded", field="body") from exc
    else:
        # Not flagged binary: text bodies only survive as their UTF-8 bytes.
        data = body.encode("utf-8", "surrogateescape")
    return ImageRequest(data=data, explain=explain, field="body", declared=content_type)


def read_json_body(body: dict[str, Any], query: dict[str, str] | None = None) -> ImageRequest:
    """A JSON request ``{"image": "<base64>", "explain": false}`` (already parsed to a dict)."""
    _check_query(query, allow_explain=False)
    errors: list[tuple[str, str]] = [unknown_key("", k) for k in sorted(body.keys() - _JSON_FIELDS)]
    image = body.get("image")
    explain = body.get("explain", False)
    if "image" not in body:
        errors.append(("image", "required field is missing"))
    elif not isinstance(image, str) or not image:
        errors.append(("image", "must be a non-empty base64 string"))
    if not isinstance(explain, bool):
        errors.append(("explain", "must be a boolean"))
    if errors:
        raise unprocessable(errors)
    assert isinstance(image, str)
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise unprocessable([("image", "is not valid base64")]) from exc
    if not data:
        raise unprocessable([("image", "decodes to zero bytes")])
    return ImageRequest(data=data, explain=bool(explain), field="image")


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
    spec = spec_for(entry)
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
    spec = spec_for(entry)
    image = decode_image(request.data, spec=spec.image, field=request.field)
    return predict_decoded(entry, image, explain=request.explain, declared=request.declared)


# --- FHIR ---------------------------------------------------------------------------------
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _uuid() -> str:
    return str(uuid.uuid4())


def fhir_bundle(entry: ModelEntry, result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle: DiagnosticReport, its Observations, the model as Device.

    The report's status is ``preliminary``: it is an unverified machine result that
    a clinician has not reviewed, so it must not be presented as ``final``. No
    patient, subject or DICOM identifier is included (none is read). The report has
    no ``performer``: R4 allows only Practitioner, PractitionerRole, Organization or
    CareTeam there; each Observation names the model in ``device`` instead.
    """
    spec = spec_for(entry)
    dev = fhir.device(entry)
    when = fhir.now()
    pred = result["prediction"]
    positive = pred["label"] == spec.positive
    p_pos = pred["probabilities"][spec.positive]
    common: dict[str, Any] = {
        "status": "preliminary",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
        "effectiveDateTime": when,
        "issued": when,
        "device": fhir.ref(dev),
    }
    finding: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _uuid(),
        **common,
        "code": {"text": spec.finding_text},
        "valueCodeableConcept": {"text": pred["label"]},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": _INTERPRETATION,
                        "code": "POS" if positive else "NEG",
                        "display": "Positive" if positive else "Negative",
                    }
                ],
                "text": f"{spec.positive} {'suggested' if positive else 'not suggested'} at threshold "
                f"{spec.threshold:.4g}",
            }
        ],
        "note": [{"text": "Machine output of a research model; not reviewed by a clinician."}],
    }
    probabilities = [
        {
            "resourceType": "Observation",
            "id": _uuid(),
            **common,
            "code": {"text": f"AI-estimated probability of {label}"},
            "valueQuantity": {
                "value": p,
                "unit": "probability",
                "system": "http://unitsofmeasure.org",
                "code": "1",
            },
        }
        for label, p in pred["probabilities"].items()
    ]
    observations = [finding, *probabilities]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _uuid(),
        "identifier": [{"system": "https://medserve.dev/request", "value": request_id}],
        "status": "preliminary",
        "category": [{"coding": [{"system": _CATEGORY, "code": "RAD", "display": "Radiology"}]}],
        "code": {"text": spec.report_text},
        "effectiveDateTime": when,
        "issued": when,
        "result": [fhir.ref(o) for o in observations],
        "conclusion": (
            f"{pred['label']} (probability of {spec.positive} {p_pos:.3f}, threshold {spec.threshold:.4g}). "
            "Preliminary machine result of a research model; not for clinical use."
            + (" Trained on SYNTHETIC data: no clinical meaning." if entry.synthetic else "")
        ),
    }
    if result.get("heatmap"):
        hm = result["heatmap"]
        report["presentedForm"] = [
            {
                "contentType": "image/png",
                "data": hm["png"],
                "title": f"class activation map for {spec.positive} ({hm['width']}x{hm['height']})",
            }
        ]
    return fhir.bundle([report, *observations, dev])
