"""Task ``risk``: tabular models (classification or regression) over raw clinical features.

Import-light: NumPy and the model glue (:mod:`.service`) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medserve.fields import Field, Record, number_fields, schema_map, schema_object, schema_types
from medserve.tasks.base import HttpRequest, Task

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from medserve.registry import ModelEntry

MAX_INSTANCES = 1000
CHUNK_ROWS = 1000
"""Batch rows validated and predicted per ``session.run``."""

ParsedRisk = tuple["np.ndarray", bool]


def instance_record(entry: ModelEntry) -> Record:
    """One instance: every manifest input, required, with its range (the validation and the schema)."""
    return Record(
        number_fields(entry.manifest.get("inputs", [])),
        noun="feature",
        title=entry.id,
        unknown="unknown feature for this model",
    )


def body_record(instance: Record) -> Record:
    """The request body around ``instance``."""
    return Record(
        (
            Field(
                "instances",
                "array",
                items=instance,
                min_items=1,
                max_items=MAX_INSTANCES,
                noun="instances",
                description=f"1 to {MAX_INSTANCES} rows of raw features",
            ),
            Field("explain", "boolean", required=False, default=False),
        )
    )


class RiskTask(Task):
    """``POST /v1/risk/{model_id}/predict``: ``{"instances": [...], "explain": bool}``."""

    name = "risk"
    summary = "Tabular risk prediction"

    def build_spec(self, entry: ModelEntry) -> Any:
        from medserve.tasks.risk.service import RiskSpec

        return RiskSpec(entry)

    def detail(self, entry: ModelEntry) -> dict[str, Any]:
        return {}

    def parse(self, entry: ModelEntry, request: HttpRequest) -> ParsedRisk:
        from medserve.tasks.risk.service import parse_body

        request.reject_query()
        return parse_body(entry.spec, request.json())

    def predict(self, entry: ModelEntry, parsed: list[ParsedRisk]) -> list[dict[str, Any]]:
        from medserve.tasks.risk.service import predictions

        return [{"predictions": predictions(entry, x, explain_=explain)} for x, explain in parsed]

    def unexplained(self, parsed: ParsedRisk) -> ParsedRisk:
        return (parsed[0], False)

    def scores(self, entry: ModelEntry, result: dict[str, Any]) -> list[tuple[str | None, float]]:
        if entry.spec.kind == "regression":
            return [(None, p["value"]) for p in result["predictions"]]
        return [(p["label"], p["probability"]) for p in result["predictions"]]

    def fhir(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        from medserve.tasks.risk.fhir import bundle

        return bundle(entry, result, request_id)

    def check_tensors(self, entry: ModelEntry, tensors: dict[str, Any], fields: dict[str, str], errors: Any) -> None:
        from medserve.v2 import check_columns, columns_of

        columns = columns_of(entry.manifest)
        (name,) = tensors
        if tensors[name].shape[-1] == len(columns):
            check_columns(errors, fields[name], tensors[name], columns)

    def batch(self, entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
        from medserve.tasks.risk.batch import process

        return process(entry, data, name, max_rows=max_rows)

    def request_schema(self, entries: list[ModelEntry]) -> dict[str, Any]:
        schema = body_record(instance_record(entries[0]) if entries else Record(())).json_schema()
        variants = [instance_record(e).json_schema() for e in entries]
        variants = [v for k, v in enumerate(variants) if v not in variants[:k]]  # versions that share inputs
        schema["properties"]["instances"]["items"] = {"oneOf": variants} if variants else {"type": "object"}
        return {"application/json": {"schema": schema}}

    def response_schema(self) -> dict[str, Any]:
        prediction = schema_object(
            {
                **schema_types(label="string", probability="number", value="number"),
                "probabilities": schema_map("number"),
                "unit": {"type": ["string", "null"]},
                "contributions": schema_map("number"),
            }
        )
        return {"predictions": {"type": "array", "items": prediction}}


TASK = RiskTask()
