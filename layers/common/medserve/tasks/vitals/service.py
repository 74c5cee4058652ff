"""Vital-sign sequence models: validate, predict, explain by occlusion, answer in FHIR.

One ``session.run`` for the prediction and, with ``explain``, one more batched run for
every occlusion window. NEWS2 (RCP 2017, SpO2 scale 1) of the last observation is
returned beside the model's probability.

Explanation (occlusion over time windows)
-----------------------------------------
The ``T`` observations are cut into at most :data:`MAX_WINDOWS` windows of ``k =
ceil(T / MAX_WINDOWS)`` consecutive observations. In each occluded copy the window's
readings (not its times) are replaced by the observation just before the window,
carried forward ("as if nothing had changed"); the first window, which has nothing
before it, takes the observation just after it; a window that covers the whole
sequence takes the manifest's reference normal observation. ``weight`` = baseline
probability − occluded probability: positive where the window's readings raised the
predicted risk. Contributions are in time order; ``start``/``end`` are the ``time``
strings of the window's first and last observation as sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from medserve.fields import Record
from medserve.registry import ModelEntry
from medserve.tasks.vitals.fastpath import FastPlan, plan
from medserve.tasks.vitals.features import (
    FIELD_SPECS,
    MAX_OBSERVATIONS,
    NUMERIC_FIELDS,
    REFERENCE_OBSERVATION,
    encode,
)
from medserve.tasks.vitals.news2 import news2
from medserve.tasks.vitals.validation import VitalsRequest, body_record, validate_request

__all__ = ["MAX_WINDOWS", "VitalsSpec", "build_spec", "explain", "parse", "predict", "warning_texts", "windows"]

MAX_WINDOWS = 24


@dataclass(frozen=True)
class VitalsSpec:
    """What one vitals model accepts and returns, read once from its manifest."""

    features: list[dict[str, Any]]
    horizon_hours: float
    max_observations: int
    threshold: float
    labels: list[str]
    positive: str
    negative: str
    input_names: tuple[str, str]
    output_name: str
    reference: np.ndarray  # [F_readings] encoded reference normal observation (no dt column)
    train_min: np.ndarray
    train_max: np.ndarray
    columns: list[str]
    trained_max_length: int | None
    body: Record
    fast: FastPlan | None = None  # the batch fast path's checks (None: every sequence validated one by one)


def build_spec(entry: ModelEntry) -> VitalsSpec:
    """The :class:`VitalsSpec` of a model (``entry.spec`` caches it)."""
    m = entry.manifest
    v = m.get("vitals", {})
    out = m["outputs"]
    labels = list(out.get("labels", ["no_deterioration", "deterioration"]))
    positive = out.get("positive_label", labels[-1])
    ref_obs = {**REFERENCE_OBSERVATION, **v.get("reference_observation", {})}
    ref = encode([ref_obs], [datetime(2000, 1, 1)])[0, :-1]
    inputs = m.get("inputs", [])
    lengths = m.get("training_data", {}).get("observations_per_patient", {})
    features = list(v.get("features", FIELD_SPECS))
    max_observations = int(v.get("max_observations", MAX_OBSERVATIONS))
    body = body_record(features, max_observations)
    return VitalsSpec(
        features=features,
        horizon_hours=float(v.get("horizon_hours", 24)),
        max_observations=max_observations,
        threshold=float(v.get("threshold", out.get("threshold", 0.5))),
        labels=labels,
        positive=positive,
        negative=next(label for label in labels if label != positive),
        input_names=(m["onnx"]["inputs"][0]["name"], m["onnx"]["inputs"][1]["name"]),
        output_name=m["onnx"]["outputs"][0]["name"],
        reference=ref,
        train_min=np.array([i.get("train_min", -np.inf) for i in inputs], dtype=np.float32),
        train_max=np.array([i.get("train_max", np.inf) for i in inputs], dtype=np.float32),
        columns=[i["name"] for i in inputs],
        trained_max_length=lengths.get("max"),
        body=body,
        fast=plan(body),
    )


def parse(entry: ModelEntry, body: Any) -> VitalsRequest:
    """Validate a request body against this model's manifest (422 on any violation)."""
    return validate_request(body, record=entry.spec.body)


def _probabilities(entry: ModelEntry, spec: VitalsSpec, x: np.ndarray) -> np.ndarray:
    mask = np.ones(x.shape[:2], dtype=np.float32)
    out = entry.run({spec.input_names[0]: x, spec.input_names[1]: mask})[spec.output_name]
    p = np.asarray(out, dtype=np.float64).reshape(len(x))
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{entry.id}: non-finite model output")
    return np.clip(p, 0.0, 1.0)


def windows(t: int, max_windows: int = MAX_WINDOWS) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` index windows covering ``range(t)`` in order.

    Parameters
    ----------
    t
        Number of observations.
    max_windows
        At most this many windows, each of ``ceil(t / max_windows)`` observations.
    """
    k = max(1, math.ceil(t / max_windows))
    return [(s, min(s + k, t)) for s in range(0, t, k)]


def explain(entry: ModelEntry, spec: VitalsSpec, x: np.ndarray, base: float, times: list[str]) -> list[dict[str, Any]]:
    """Occlusion contributions for one sequence ``x`` ``[1, T, F]``, one batched run.

    Returns
    -------
    list of dict
        ``[{"start", "end", "weight"}]`` in time order.
    """
    t = x.shape[1]
    wins = windows(t)
    batch = np.repeat(x, len(wins), axis=0)  # [W, T, F]
    readings = slice(0, x.shape[2] - 1)  # every column but dt_hours
    for w, (s, e) in enumerate(wins):
        if s > 0:
            fill = x[0, s - 1, readings]
        elif e < t:
            fill = x[0, e, readings]
        else:
            fill = spec.reference
        batch[w, s:e, readings] = fill
    occluded = _probabilities(entry, spec, batch)
    return [
        {"start": times[s], "end": times[e - 1], "weight": round(float(base - p), 6)}
        for (s, e), p in zip(wins, occluded.tolist(), strict=True)
    ]


def _warnings(spec: VitalsSpec, x: np.ndarray) -> list[str]:
    outside = None
    if len(spec.train_min) == x.shape[2]:
        flat = x.reshape(-1, x.shape[2])
        outside = ((flat < spec.train_min) | (flat > spec.train_max)).any(axis=0)
    return warning_texts(spec, outside, x.shape[1])


def warning_texts(spec: VitalsSpec, outside: np.ndarray | None, length: int) -> list[str]:
    """The warnings of a sequence of ``length`` observations, ``outside[j]`` when column ``j`` left
    the training range somewhere (``None`` when the manifest states no range per column)."""
    out: list[str] = []
    if outside is not None and outside.any():
        names = [spec.columns[j] for j in np.flatnonzero(outside) if spec.columns[j] in NUMERIC_FIELDS]
        if names:
            out.append(
                "values of " + ", ".join(names) + " lie outside the model's training range; "
                "the probability is an extrapolation there"
            )
    if spec.trained_max_length and length > spec.trained_max_length:
        out.append(
            f"{length} observations: longer than any training sequence "
            f"({spec.trained_max_length}); the model has not been validated on sequences this long"
        )
    return out


def predict(entry: ModelEntry, request: VitalsRequest) -> dict[str, Any]:
    """Run the model (and NEWS2) on a validated request.

    Returns
    -------
    dict
        ``{"prediction": {"probability", "label", "horizon_hours"}, "news2": {...},
        "warnings": [...]}`` plus ``"contributions"`` when ``request.explain``.
    """
    spec: VitalsSpec = entry.spec
    x = encode(request.observations, request.times)[None]
    p = float(_probabilities(entry, spec, x)[0])
    return build_result(entry, request, p, x)


def build_result(entry: ModelEntry, request: VitalsRequest, p: float, x: np.ndarray) -> dict[str, Any]:
    """The response of :func:`predict` for a probability ``p`` already computed on ``x`` ``[1, T, F]``.

    Batch computes many probabilities in one padded ``session.run`` and builds each
    sequence's result here, so the API and batch answer identically.
    """
    spec: VitalsSpec = entry.spec
    horizon: float | int = int(spec.horizon_hours) if spec.horizon_hours.is_integer() else spec.horizon_hours
    result: dict[str, Any] = {
        "prediction": {
            "probability": round(p, 6),
            "label": spec.positive if p >= spec.threshold else spec.negative,
            "horizon_hours": horizon,
        },
        "news2": news2(request.observations[-1]),
    }
    warnings = _warnings(spec, x)
    if warnings:
        result["warnings"] = warnings
    if request.explain:
        result["contributions"] = explain(entry, spec, x, p, [o["time"] for o in request.observations])
    return result
