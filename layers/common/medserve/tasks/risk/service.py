"""Tabular risk models: validate instances against the manifest, predict, explain.

Standardisation lives inside the ONNX graph (manifest ``preprocessing``); this
module only checks and packs raw clinical values, then reads the outputs.
Everything is vectorised: one ``session.run`` for all instances, one more for
all explanations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medserve.problems import unprocessable
from medserve.registry import ModelEntry
from medserve.tasks.risk import MAX_INSTANCES, body_record, instance_record


class RiskSpec:
    """What one risk model accepts, precomputed from its manifest at init."""

    def __init__(self, entry: ModelEntry) -> None:
        m = entry.manifest
        self.inputs: list[dict[str, Any]] = m["inputs"]
        self.names = [i["name"] for i in self.inputs]
        self.index = {n: k for k, n in enumerate(self.names)}
        self.lo = np.array([i.get("min", -np.inf) for i in self.inputs], dtype=np.float64)
        self.hi = np.array([i.get("max", np.inf) for i in self.inputs], dtype=np.float64)
        self.allowed = {i["name"]: sorted(i["allowed"]) for i in self.inputs if i.get("allowed")}
        self.mean = np.array([i["train_mean"] for i in self.inputs], dtype=np.float32)
        self.kind: str = m.get("kind", "classification")
        out = m["outputs"]
        self.labels: list[str] = out.get("labels", [])
        self.positive: str | None = out.get("positive_label") or (self.labels[-1] if self.labels else None)
        self.negative: str | None = next((label for label in self.labels if label != self.positive), None)
        self.threshold = float(out.get("threshold", 0.5))
        self.unit: str | None = out.get("unit")
        self.input_name: str = m["onnx"]["inputs"][0]["name"]
        self.output_name: str = m["onnx"]["outputs"][0]["name"]
        self.instance = instance_record(entry)
        self.body = body_record(self.instance)


_NUMBER_TYPES = frozenset({int, float})


def _pack_valid(spec: RiskSpec, instances: list[Any]) -> np.ndarray | None:
    """Vectorised fast path: the float32 matrix when every instance is valid, else None.

    Checks the same rules as the field-by-field path with a handful of C-speed passes
    (about 6x faster for 1000 rows); any failure falls back to :func:`validate_instances`'s
    slow path, which names every offending field.
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
        if not np.isin(x[:, spec.index[name]], allowed).all():
            return None
    return x.astype(np.float32)


def validate_instances(spec: RiskSpec, instances: list[Any]) -> np.ndarray:
    """Check every instance and pack them into a float32 ``[N, F]`` matrix.

    Every problem in every row is reported (422), each naming ``instances[i].<feature>``.
    Messages state the rule, never the value.
    """
    packed = _pack_valid(spec, instances)
    if packed is not None:
        return packed
    errors: list[tuple[str, str]] = []
    spec.body.get("instances").check(instances, "instances", errors)
    if errors:
        raise unprocessable(errors)
    return np.array([[row[n] for n in spec.names] for row in instances], dtype=np.float32)


def parse_body(spec: RiskSpec, body: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """A request body ``{"instances": [...], "explain": bool}`` -> ``(x [N, F], explain)``."""
    instances = body.get("instances")
    if isinstance(instances, list) and 1 <= len(instances) <= MAX_INSTANCES and body.keys() <= {"instances", "explain"}:
        explain = body.get("explain", False)
        if isinstance(explain, bool):
            return validate_instances(spec, instances), explain
    errors: list[tuple[str, str]] = []
    spec.body.check(body, "", errors)
    if errors:
        raise unprocessable(errors)
    raise AssertionError("unreachable: a body that fails the fast checks has errors")  # pragma: no cover


def scores(entry: ModelEntry, x: np.ndarray) -> np.ndarray:
    """One ``session.run`` over ``x`` ``[N, F]``: the score of each row (non-finite is our bug)."""
    spec: RiskSpec = entry.spec
    out = np.asarray(entry.run({spec.input_name: x})[spec.output_name], dtype=np.float64).reshape(len(x))
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{entry.id}: non-finite model output")
    return out


def explain(entry: ModelEntry, x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Ablation contributions ``[N, F]``: score minus score with feature j set to its training mean.

    All ``N * F`` ablated rows go through one batched ``session.run``.
    """
    spec: RiskSpec = entry.spec
    n, f = x.shape
    ablated = np.repeat(x[:, None, :], f, axis=1)  # [N, F, F]
    diag = np.arange(f)
    ablated[:, diag, diag] = spec.mean[None, :]
    return base[:, None] - scores(entry, ablated.reshape(n * f, f)).reshape(n, f)


def predictions(entry: ModelEntry, x: np.ndarray, *, explain_: bool = False) -> list[dict[str, Any]]:
    """The contract's ``P`` for every row of ``x`` (one run, one more to explain)."""
    spec: RiskSpec = entry.spec
    s = scores(entry, x)
    contributions = explain(entry, x, s) if explain_ else None
    out: list[dict[str, Any]] = []
    rounded = np.round(s, 6).tolist()
    if spec.kind == "regression":
        out = [{"value": v, "unit": spec.unit} for v in rounded]
    else:
        prob = np.clip(s, 0.0, 1.0)
        p = np.round(prob, 6).tolist()
        q = np.round(1.0 - prob, 6).tolist()
        positive = (prob >= spec.threshold).tolist()
        out = [
            {
                "label": spec.positive if pos else spec.negative,
                "probability": pk,
                "probabilities": {spec.negative: qk, spec.positive: pk},
            }
            for pk, qk, pos in zip(p, q, positive, strict=True)
        ]
    if contributions is not None:
        for p_i, row in zip(out, np.round(contributions, 6).tolist(), strict=True):
            p_i["contributions"] = dict(zip(spec.names, row, strict=True))
    return out


def predict(entry: ModelEntry, instances: list[Any], *, explain_: bool = False) -> dict[str, Any]:
    """Validate a list of instances and predict them: ``{"predictions": [P, ...]}``."""
    return {"predictions": predictions(entry, validate_instances(entry.spec, instances), explain_=explain_)}
