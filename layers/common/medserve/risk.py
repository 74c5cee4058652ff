"""Tabular risk models: validate instances against the manifest, predict, explain.

Standardisation lives inside the ONNX graph (manifest ``preprocessing``); this
module only checks and packs raw clinical values, then reads the outputs.
Everything is vectorised: one ``session.run`` for all instances, one more for
all explanations.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from medserve.problems import unknown_key, unprocessable
from medserve.registry import ModelEntry

MAX_INSTANCES = 1000


class RiskRequest(BaseModel):
    """``POST /v1/risk/{model_id}/predict`` body (feature checks are per model, below)."""

    model_config = ConfigDict(extra="forbid")

    instances: Annotated[
        list[dict[str, Any]],
        Field(min_length=1, max_length=MAX_INSTANCES, description="1 to 1000 rows of raw features"),
    ]
    explain: StrictBool = False


class RiskSpec:
    """What one risk model accepts, precomputed from its manifest at init."""

    def __init__(self, entry: ModelEntry) -> None:
        m = entry.manifest
        self.inputs: list[dict[str, Any]] = m["inputs"]
        self.names = [i["name"] for i in self.inputs]
        self.name_set = set(self.names)
        self.index = {n: k for k, n in enumerate(self.names)}
        self.lo = np.array([i.get("min", -np.inf) for i in self.inputs], dtype=np.float64)
        self.hi = np.array([i.get("max", np.inf) for i in self.inputs], dtype=np.float64)
        self.allowed = {i["name"]: set(i["allowed"]) for i in self.inputs if i.get("allowed")}
        self.mean = np.array([i["train_mean"] for i in self.inputs], dtype=np.float32)
        self.kind: str = m.get("kind", "classification")
        out = m["outputs"]
        self.labels: list[str] = out.get("labels", [])
        self.positive: str | None = out.get("positive_label")
        self.threshold = float(out.get("threshold", 0.5))
        self.unit: str | None = out.get("unit")
        self.input_name: str = m["onnx"]["inputs"][0]["name"]
        self.output_name: str = m["onnx"]["outputs"][0]["name"]


_SPECS: dict[tuple[str, str], RiskSpec] = {}


def spec_for(entry: ModelEntry) -> RiskSpec:
    """The cached :class:`RiskSpec` of a model (built once per container)."""
    key = (entry.id, entry.version)
    if key not in _SPECS:
        _SPECS[key] = RiskSpec(entry)
    return _SPECS[key]


def _describe_range(spec: RiskSpec, name: str) -> str:
    k = spec.index[name]
    unit = spec.inputs[k].get("unit") or ""
    return f"must be between {spec.lo[k]:g} and {spec.hi[k]:g} {unit}".rstrip()


_NUMBER_TYPES = frozenset({int, float})


def _pack_valid(spec: RiskSpec, instances: list[dict[str, Any]]) -> np.ndarray | None:
    """Vectorised fast path: the float32 matrix when every instance is valid, else None.

    Checks the same rules as :func:`validate_instances` with a handful of C-speed passes
    (about 6x faster for 1000 rows); any failure falls back to the slow path, which
    names every offending field.
    """
    nf = len(spec.names)
    if any(type(row) is not dict or len(row) != nf for row in instances):
        return None
    try:
        values = [row[name] for row in instances for name in spec.names]
    except KeyError:
        return None
    if not set(map(type, values)) <= _NUMBER_TYPES:  # bool, str, None, lists... take the slow path
        return None
    try:
        x = np.fromiter(values, dtype=np.float64, count=len(values)).reshape(len(instances), nf)
    except OverflowError:  # an int too large for a float
        return None
    if not np.isfinite(x).all() or (x < spec.lo).any() or (x > spec.hi).any():
        return None
    for name, allowed in spec.allowed.items():
        if not np.isin(x[:, spec.index[name]], list(allowed)).all():
            return None
    return x.astype(np.float32)


def validate_instances(spec: RiskSpec, instances: list[dict[str, Any]]) -> np.ndarray:
    """Check every instance and pack them into a float32 ``[N, F]`` matrix.

    Every problem in every row is reported (422), each naming
    ``instances[i].<feature>``. Messages state the rule, never the value.
    """
    packed = _pack_valid(spec, instances)
    return packed if packed is not None else _check_each(spec, instances)


def _check_each(spec: RiskSpec, instances: list[dict[str, Any]]) -> np.ndarray:
    """Field-by-field validation: raises a 422 naming every bad field, else packs the matrix."""
    errors: list[tuple[str, str]] = []
    n = len(instances)
    x = np.full((n, len(spec.names)), np.nan, dtype=np.float64)
    for i, row in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(row, dict):
            errors.append((where, "must be an object of feature: number"))
            continue
        for key in row.keys() - spec.name_set:
            field, message = unknown_key(where, key)
            errors.append((field, message.replace("unknown field", "unknown feature for this model")))
        for name in spec.names:
            field = f"{where}.{name}"
            if name not in row:
                errors.append((field, "required feature is missing"))
                continue
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append((field, "must be a number"))
                continue
            try:
                finite = math.isfinite(value)
            except OverflowError:  # an integer too large for a float
                finite = False
            if not finite:
                errors.append((field, "must be a finite number"))
                continue
            x[i, spec.index[name]] = value
            if name in spec.allowed and value not in spec.allowed[name]:
                errors.append((field, f"must be one of {sorted(spec.allowed[name])}"))
    # Range checks vectorised; cells that already failed are NaN and never compare true.
    with np.errstate(invalid="ignore"):
        out_of_range = (x < spec.lo) | (x > spec.hi)
    for i, k in zip(*np.nonzero(out_of_range), strict=True):
        name = spec.names[k]
        errors.append((f"instances[{i}].{name}", _describe_range(spec, name)))
    if errors:
        raise unprocessable(sorted(set(errors), key=_error_order))
    return x.astype(np.float32)


def _error_order(err: tuple[str, str]) -> tuple[int, str]:
    field = err[0]
    idx = int(field[field.index("[") + 1 : field.index("]")]) if "[" in field else -1
    return idx, field


def _scores(entry: ModelEntry, spec: RiskSpec, x: np.ndarray) -> np.ndarray:
    out = entry.run({spec.input_name: x})[spec.output_name]
    return np.asarray(out, dtype=np.float64).reshape(len(x))


def explain(entry: ModelEntry, spec: RiskSpec, x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Ablation contributions ``[N, F]``: score minus score with feature j set to its training mean.

    All ``N * F`` ablated rows go through one batched ``session.run``.
    """
    n, f = x.shape
    ablated = np.repeat(x[:, None, :], f, axis=1)  # [N, F, F]
    diag = np.arange(f)
    ablated[:, diag, diag] = spec.mean[None, :]
    scores = _scores(entry, spec, ablated.reshape(n * f, f)).reshape(n, f)
    return base[:, None] - scores


def predict(entry: ModelEntry, instances: list[dict[str, Any]], *, explain_: bool = False) -> dict[str, Any]:
    """Validate, run once, and build the contract's ``predictions``."""
    spec = spec_for(entry)
    x = validate_instances(spec, instances)
    scores = _scores(entry, spec, x)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{entry.id}: non-finite model output")
    contributions = explain(entry, spec, x, scores) if explain_ else None
    predictions: list[dict[str, Any]] = []
    for i, score in enumerate(scores.tolist()):
        if spec.kind == "regression":
            p: dict[str, Any] = {"value": round(score, 6), "unit": spec.unit}
        else:
            positive = spec.positive or spec.labels[-1]
            negative = next(label for label in spec.labels if label != positive)
            prob = min(1.0, max(0.0, score))
            p = {
                "label": positive if prob >= spec.threshold else negative,
                "probability": round(prob, 6),
                "probabilities": {negative: round(1.0 - prob, 6), positive: round(prob, 6)},
            }
        if contributions is not None:
            p["contributions"] = {
                name: round(float(c), 6) for name, c in zip(spec.names, contributions[i], strict=True)
            }
        predictions.append(p)
    return {"predictions": predictions}
