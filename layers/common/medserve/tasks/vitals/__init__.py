"""Task ``vitals``: a deterioration model over a vital-sign sequence, beside NEWS2.

Import-light: the submodules are imported where they are used.

- :mod:`.news2`: the RCP 2017 NEWS2 chart (pure Python).
- :mod:`.features`: observation -> model input encoding (NumPy; shared with the export).
- :mod:`.validation`: request validation, every violation reported.
- :mod:`.service`: prediction and occlusion explanation; :mod:`.fhir`; :mod:`.batch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medserve.tasks.base import HttpRequest, Task

if TYPE_CHECKING:  # pragma: no cover
    from medserve.registry import ModelEntry


class VitalsTask(Task):
    """``POST /v1/vitals/{model_id}/predict``: ``{"observations": [...], "explain": bool}``."""

    name = "vitals"
    summary = "Deterioration risk from a vital-sign sequence, beside NEWS2"

    def build_spec(self, entry: ModelEntry) -> Any:
        from medserve.tasks.vitals.service import build_spec

        return build_spec(entry)

    def parse(self, entry: ModelEntry, request: HttpRequest) -> Any:
        from medserve.tasks.vitals.service import parse

        request.reject_query()
        return parse(entry, request.json())

    def predict(self, entry: ModelEntry, parsed: list[Any]) -> list[dict[str, Any]]:
        from medserve.tasks.vitals.batch import predict_sequences

        return predict_sequences(entry, parsed)

    def fhir(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        from medserve.tasks.vitals.fhir import bundle

        return bundle(entry, parsed, result, request_id)

    def batch(self, entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
        from medserve.tasks.vitals.batch import process

        return process(entry, data, name, max_rows=max_rows)

    def request_schema(self, entries: list[ModelEntry]) -> dict[str, Any]:
        from medserve.tasks.vitals.features import FIELD_SPECS, MAX_OBSERVATIONS
        from medserve.tasks.vitals.validation import body_record

        variants = [
            body_record(v.get("features", FIELD_SPECS), int(v.get("max_observations", MAX_OBSERVATIONS))).json_schema()
            for v in (e.manifest.get("vitals", {}) for e in entries)
        ] or [body_record().json_schema()]
        unique = [s for k, s in enumerate(variants) if s not in variants[:k]]
        schema = unique[0] if len(unique) == 1 else {"oneOf": unique}
        return {"application/json": {"schema": schema}}

    def response_schema(self) -> dict[str, Any]:
        from medserve.fields import schema_map, schema_object, schema_types

        risk = {"type": "string", "enum": ["low", "low-medium", "medium", "high"]}
        window = schema_object(schema_types(start="string", end="string", weight="number"))
        return {
            "prediction": schema_object(schema_types(probability="number", label="string", horizon_hours="number")),
            "news2": schema_object({"score": {"type": "integer"}, "risk": risk, "components": schema_map("integer")}),
            "contributions": {"type": "array", "items": window},
        }


TASK = VitalsTask()
