"""Task ``vitals``: a deterioration model over a vital-sign sequence, beside NEWS2.

Import-light: the submodules are imported where they are used.

- :mod:`.news2`: the RCP 2017 NEWS2 chart (pure Python).
- :mod:`.features`: observation -> model input encoding (NumPy; shared with the export).
- :mod:`.validation`: request validation, every violation reported.
- :mod:`.service`: prediction and occlusion explanation; :mod:`.fhir`; :mod:`.batch`.
- :mod:`.fastpath`: batch validation and encoding of many sequences at once (NumPy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medserve.tasks.base import HttpRequest, Task

if TYPE_CHECKING:  # pragma: no cover
    from medserve.registry import ModelEntry


def _codes(manifest: dict[str, Any], columns: list[Any]) -> None:
    """Categorical vitals fields are integer codes (ACVPU 0-4, oxygen 0/1): only those values."""
    for feature in (manifest.get("vitals") or {}).get("features", []):
        col = next((c for c in columns if c.name == feature.get("name")), None)
        if col is None:
            continue
        if feature.get("type") == "boolean":
            col.codes = (0.0, 1.0)
        elif feature.get("type") == "string" and feature.get("allowed"):
            col.codes = tuple(float(k) for k in range(len(feature["allowed"])))


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

    def scores(self, entry: ModelEntry, result: dict[str, Any]) -> list[tuple[str | None, float]]:
        return [(result["prediction"]["label"], result["prediction"]["probability"])]

    def fhir(self, entry: ModelEntry, parsed: Any, result: dict[str, Any], request_id: str) -> dict[str, Any]:
        from medserve.tasks.vitals.fhir import bundle

        return bundle(entry, parsed, result, request_id)

    def check_tensors(self, entry: ModelEntry, tensors: dict[str, Any], fields: dict[str, str], errors: Any) -> None:
        """The padded observations against their columns' ranges and codes, and a right-padded 0/1 mask."""
        import numpy as np

        from medserve.v2 import MAX_ERRORS, check_columns, columns_of, report

        m = entry.manifest
        columns = columns_of(m)
        _codes(m, columns)
        obs_name, mask_name = (t["name"] for t in m["onnx"]["inputs"][:2])
        x, mask = tensors[obs_name], tensors[mask_name]
        if x.shape[:2] != mask.shape:
            errors.add(fields[mask_name], f"shape must equal the first two dimensions of {obs_name}")
            return
        limit = int((m.get("vitals") or {}).get("max_observations", 0)) or None
        if limit is not None and x.shape[1] > limit:
            errors.add(f"{fields[obs_name].rsplit('.', 1)[0]}.shape", f"at most {limit} observations per sequence")
        bad_mask = (mask != 0) & (mask != 1)
        report(errors, fields[mask_name], bad_mask, lambda idx: "must be 0 (padding) or 1 (observation)")
        if bad_mask.any():
            return
        real = mask == 1
        # right-padded: ones first, then zeros; at least one observation per sequence
        ok = real[:, 0] & (np.diff(mask, axis=1) <= 0).all(axis=1) if mask.shape[1] else np.zeros(len(mask), bool)
        for n in np.flatnonzero(~ok)[:MAX_ERRORS].tolist():
            errors.add(fields[mask_name], f"sequence {n}: must be 1 for each observation, then 0 for right-padding")
        if x.shape[-1] == len(columns):
            check_columns(errors, fields[obs_name], x, columns, where=real)

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
