"""Task ``imaging``: radiograph classification (PNG, JPEG, DICOM) with an in-graph CAM heatmap.

Import-light on purpose: :mod:`.decode` needs only NumPy and Pillow (pydicom is imported
inside its DICOM branch), :mod:`.service` adds the model glue, :mod:`.fhir` the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medserve.tasks.base import HttpRequest, Task

if TYPE_CHECKING:  # pragma: no cover
    from medserve.registry import ModelEntry

RAW_CONTENT_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "application/dicom")
"""Raw-body media types the imaging route reads (the template lists them as BinaryMediaTypes)."""


SR_PREFIX = "sr/"
"""Batch: ``incoming/<model_id>/sr/<name>.dcm`` also writes ``results/<model_id>/sr/<name>.sr.dcm``."""


class ImagingTask(Task):
    """``POST /v1/imaging/{model_id}/predict``: raw image bytes, or ``{"image": base64, "explain"}``."""

    name = "imaging"
    raw_content_types = RAW_CONTENT_TYPES
    media_types = ("application/dicom",)
    summary = "Image classification with optional CAM heatmap"

    def build_spec(self, entry: ModelEntry) -> Any:
        from medserve.tasks.imaging.service import ImagingSpec

        return ImagingSpec(entry)

    def parse(self, entry: ModelEntry, request: HttpRequest) -> Any:
        from medserve.tasks.imaging.service import parse

        return parse(request)

    def predict(self, entry: ModelEntry, parsed: list[Any]) -> list[dict[str, Any]]:
        from medserve.tasks.imaging.service import predict

        return [predict(entry, request) for request in parsed]

    def scores(self, entry: ModelEntry, result: dict[str, Any]) -> list[tuple[str | None, float]]:
        prediction = result["prediction"]
        return [(prediction["label"], prediction["probabilities"][entry.spec.positive])]

    def fhir(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        from medserve.tasks.imaging.fhir import bundle

        return bundle(entry, result, request_id)

    def renderable(self, parsed: Any, media_type: str) -> str | None:
        from medserve.tasks.imaging.decode import sniff

        if sniff(parsed.data) != "dicom":
            return "a DICOM Structured Report needs a DICOM input; this image is not DICOM"
        return None

    def render(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], media_type: str) -> tuple[bytes, str]:
        """The DICOM SR (TID 1500), with the heatmap as a Secondary Capture when explained."""
        from medserve import sr

        heatmap = result.get("heatmap") if parsed.explain else None
        return sr.build(parsed.data, entry, result["prediction"], heatmap=heatmap, field=parsed.field).body()

    def check_tensors(self, entry: ModelEntry, tensors: dict[str, Any], fields: dict[str, str], errors: Any) -> None:
        import numpy as np

        from medserve.v2 import columns_of, report

        columns = columns_of(entry.manifest)
        if len(columns) != 1:
            return
        (name,) = tensors
        col = columns[0]
        with np.errstate(invalid="ignore"):
            bad = (tensors[name] < col.lo) | (tensors[name] > col.hi)
        text = f"must be between {col.lo:g} and {col.hi:g} ({col.unit}; see the model's image.normalization)"
        report(errors, fields[name], bad, lambda idx: text)

    def batch(self, entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
        """One image per object, decoded exactly as the API decodes it."""
        from medserve.tasks.imaging.decode import decode_image
        from medserve.tasks.imaging.service import predict_decoded

        image = decode_image(data, spec=entry.spec.image, field="object")
        result = predict_decoded(entry, image, explain=False)
        body = {
            "format": image.format,
            # one image per object: its one result row (no lines in an image), and the same
            # prediction at the top, as documents of image objects always had it
            "results": [{"row": 0, "line": None, "id": None, "prediction": result["prediction"]}],
            "prediction": result["prediction"],
            "summary": {"rows": 1, "ok": 1, "failed": 0},
            "warnings": list(result.get("warnings", [])),
        }
        if name.startswith(SR_PREFIX) and image.format == "dicom":
            from medserve import sr

            body["attachments"] = [
                (".sr.dcm", sr.build(data, entry, result["prediction"], field="object").sr, sr.DICOM)
            ]
        elif name.startswith(SR_PREFIX):
            body["warnings"].append("no DICOM SR was written: the object is not DICOM")
        return body

    def request_schema(self, entries: list[ModelEntry]) -> dict[str, Any]:
        from medserve.tasks.imaging.service import JSON_BODY

        binary = {"schema": {"type": "string", "format": "binary"}}
        return {"application/json": {"schema": JSON_BODY.json_schema()}, **{t: binary for t in RAW_CONTENT_TYPES}}

    def query_parameters(self) -> list[dict[str, Any]]:
        return [{"name": "explain", "in": "query", "schema": {"type": "boolean"}}]

    def response_schema(self) -> dict[str, Any]:
        from medserve.fields import schema_map, schema_object, schema_types

        heatmap = schema_object(schema_types(png="string", width="integer", height="integer"))
        return {
            "prediction": schema_object({"label": {"type": "string"}, "probabilities": schema_map("number")}),
            "heatmap": {"oneOf": [{"type": "null"}, heatmap]},
        }


TASK = ImagingTask()
