"""The promotion gate: ``make promote MODEL=<id> VERSION=<v>``.

Evaluates a candidate version against the live one on the change-control plan's
locked test split (``layers/models/<id>/change_control.json``), by running ONNX Runtime
on the SERVED ``model.onnx`` files (sha256 checked against their manifests), so what is
compared is what ships. Metrics come with PAIRED percentile-bootstrap intervals: every
resample scores both versions on the same cases. The gate also re-checks the
candidate's parity record (``parity.npz``) and its input/output contract against the
live version, writes ``comparison.md`` and ``comparison.png`` into the candidate's
folder, and only when every check and criterion passes updates ``live.json``.

``live.json`` after a promotion: ``live`` = the candidate, ``history`` gains
``{"version", "promoted_at", "report"}``, and ``band`` is the candidate's
prediction-distribution band (:func:`monitoring_band`), which the deployment's band alarms
use (``python -m medserve.deploy_hooks bands``); the previous live version is NOT retired: it
stays a candidate (pinnable with ``?version=``, the fastest rollback target). Retiring
is a separate, deliberate edit. Nothing but this module writes ``live.json``.

``--record-band`` records the band of the version that is live now, without a promotion
(for versions made live before bands were recorded).

Needs only NumPy and ONNX Runtime (matplotlib for the plot); never TensorFlow.
Exit status: 0 promoted, 1 refused (the report says which criterion failed),
2 the gate could not run (missing plan or candidate, locked split missing or altered,
or the version is already live or retired; nothing is written then).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_export import locked
from model_export.calibration import expected_calibration_error
from model_export.export import sha256_file

PLAN_FILE = "change_control.json"
LIVE_FILE = "live.json"
REPORT_FILE = "comparison.md"
PLOT_FILE = "comparison.png"
OPS: dict[str, Callable[[float, float], bool]] = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
#: manifest keys that make up the request/response contract; the task blocks minus their fitted numbers.
CONTRACT_KEYS = ("task", "kind", "preprocessing")
INPUT_KEYS = ("name", "dtype", "unit", "min", "max", "allowed")
OUTPUT_KEYS = ("labels", "positive_label", "unit")
TASK_BLOCK_FITTED = {"threshold"}

#: the band's defaults when a plan has no ``monitoring`` block.
BAND_DEFAULTS = {"window": 100, "coverage": 0.9999, "resamples": 20000}

__all__ = [
    "GateError",
    "Outcome",
    "auc",
    "main",
    "metric_fns",
    "monitoring_band",
    "paired_bootstrap",
    "promote",
    "record_band",
]


class GateError(RuntimeError):
    """The gate cannot run (no plan, no candidate, locked split missing or altered)."""


# --- metrics (NumPy only) -------------------------------------------------------------------
def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged (the Mann-Whitney convention)."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    first = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s), dtype=float)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); NaN without both classes."""
    y = np.asarray(y).astype(int)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _average_ranks(np.asarray(p, dtype=float))
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def metric_fns(kind: str, threshold: float | None) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """The gate's metrics for a ``classification`` (at ``threshold``) or ``regression`` model."""

    def _mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else float("nan")

    if kind == "classification":
        if threshold is None:
            raise GateError("a classifier's manifest must state outputs.threshold")
        t = float(threshold)
        return {
            "auc": auc,
            "sensitivity": lambda y, p: _mean(p[y == 1] >= t),
            "specificity": lambda y, p: _mean(p[y == 0] < t),
            "brier": lambda y, p: float(np.mean((p - y) ** 2)),
            "ece": expected_calibration_error,
        }
    if kind == "regression":

        def r2(y: np.ndarray, p: np.ndarray) -> float:
            ss = float(np.sum((y - y.mean()) ** 2))
            return 1.0 - float(np.sum((y - p) ** 2)) / ss if ss > 0 else float("nan")

        return {"mae": lambda y, p: float(np.mean(np.abs(y - p))), "r2": r2}
    raise GateError(f"unknown model kind {kind!r}")


def _ci(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def paired_bootstrap(
    y: np.ndarray,
    p_live: np.ndarray,
    p_cand: np.ndarray,
    fns_live: Mapping[str, Callable[[np.ndarray, np.ndarray], float]],
    fns_cand: Mapping[str, Callable[[np.ndarray, np.ndarray], float]],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Point estimates and PAIRED 95% percentile-bootstrap intervals of both versions and their difference.

    Each resample draws case indices once and scores the live and the candidate version on
    them; resamples where a metric is undefined for either version (e.g. AUC without both
    classes) are skipped for that metric.

    Returns
    -------
    dict
        ``{metric: {"live": {"value", "ci95"}, "candidate": {...}, "paired_difference": {...}, "n_boot"}}``;
        the difference is candidate - live.
    """
    y = np.asarray(y, dtype=float).ravel()
    p_live = np.asarray(p_live, dtype=float).ravel()
    p_cand = np.asarray(p_cand, dtype=float).ravel()
    if not (len(y) == len(p_live) == len(p_cand)) or len(y) == 0:
        raise GateError("labels and both versions' outputs must be non-empty and of equal length")
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in fns_live}  # type: dict[str, list[tuple[float, float]]]
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        yb = y[idx]
        for k in fns_live:
            a, b = fns_live[k](yb, p_live[idx]), fns_cand[k](yb, p_cand[idx])
            if np.isfinite(a) and np.isfinite(b):
                samples[k].append((a, b))
    out: dict[str, dict[str, Any]] = {}
    for k in fns_live:
        a0, b0 = fns_live[k](y, p_live), fns_cand[k](y, p_cand)
        if not samples[k] or not (np.isfinite(a0) and np.isfinite(b0)):
            raise GateError(f"metric {k} is undefined on the locked split")
        s = np.asarray(samples[k])
        out[k] = {
            "live": {"value": float(a0), "ci95": _ci(s[:, 0])},
            "candidate": {"value": float(b0), "ci95": _ci(s[:, 1])},
            "paired_difference": {"value": float(b0 - a0), "ci95": _ci(s[:, 1] - s[:, 0])},
            "n_boot": len(s),
        }
    return out


# --- the prediction-distribution band ---------------------------------------------------------
def monitoring_band(
    kind: str,
    scores: np.ndarray,
    threshold: float | None,
    *,
    window: int,
    coverage: float,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The range a healthy alarm period's average should fall in, from one version's locked-split outputs.

    The deployed functions emit, per answer and per ``ModelId``, the share of positive labels
    (``PositiveShare``, classifiers, at the version's own threshold) or the mean score
    (``MeanScore``, regressions); the band alarms average them over 5 minutes. The band is
    the central ``coverage`` interval of that average over ``resamples`` draws of ``window``
    locked-split cases (with replacement): what a period of ``window`` predictions from the
    locked split's case mix would show. Fewer predictions in a period, or another case mix,
    widen the natural spread: ``window`` is the plan's declared minimum traffic per period.

    Returns
    -------
    dict
        ``{"metric", "low", "high", "center", "window", "coverage", "resamples", "n"}``.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not s.size or not np.all(np.isfinite(s)) or window < 1 or not 0.5 < coverage < 1:
        raise GateError("a band needs finite outputs, window >= 1 and 0.5 < coverage < 1")
    if kind == "classification":
        if threshold is None:
            raise GateError("a classifier's manifest must state outputs.threshold")
        metric, values = "PositiveShare", (s >= float(threshold)).astype(np.float64)
    elif kind == "regression":
        metric, values = "MeanScore", s
    else:
        raise GateError(f"unknown model kind {kind!r}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, window))].mean(axis=1)
    tail = (1.0 - coverage) / 2.0
    # observed averages, not interpolations between them: a share over ``window`` is a multiple of 1/window
    low, high = float(np.quantile(means, tail, method="lower")), float(np.quantile(means, 1.0 - tail, method="higher"))
    return {
        "metric": metric,
        "low": round(low, 6),
        "high": round(high, 6),
        "center": round(float(values.mean()), 6),
        "window": int(window),
        "coverage": float(coverage),
        "resamples": int(resamples),
        "n": int(len(values)),
    }


def _threshold(manifest: Mapping[str, Any]) -> float | None:
    """The operating point the served answers use, read as the services read it (the vitals block's
    ``threshold`` wins over ``outputs.threshold``; the other tasks read ``outputs.threshold``)."""
    value = (manifest.get("vitals") or {}).get("threshold")
    if value is None:
        value = manifest["outputs"].get("threshold")
    return None if value is None else float(value)


def _band_of(plan: Mapping[str, Any], manifest: Mapping[str, Any], scores: np.ndarray, version: str) -> dict[str, Any]:
    mon = {**BAND_DEFAULTS, **(plan.get("monitoring") or {})}
    band = monitoring_band(
        str(plan.get("kind", manifest.get("kind"))),
        scores,
        _threshold(manifest),
        window=int(mon["window"]),
        coverage=float(mon["coverage"]),
        resamples=int(mon["resamples"]),
        seed=int(plan.get("bootstrap", {}).get("seed", plan["locked_test"]["seed"])),
    )
    if mon.get("metric", band["metric"]) != band["metric"]:
        raise GateError(
            f"the plan's monitoring metric {mon['metric']!r} is not the {band['metric']} of a {plan['kind']}"
        )
    return {"version": version, **band, "basis": "locked test split, scored by the served model.onnx"}


# --- checks ------------------------------------------------------------------------------------
@dataclass
class Check:
    """One line of the verdict: a plan criterion or a structural check."""

    name: str
    rule: str
    observed: str
    passed: bool


@dataclass
class Outcome:
    """What the gate decided and where it wrote the report."""

    model: str
    candidate: str
    live: str
    promoted: bool
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Path | None = None
    band: dict[str, Any] = field(default_factory=dict)
    """The candidate's prediction-distribution band; written to live.json only when promoted."""

    @property
    def failed(self) -> list[str]:
        """Names of the checks and criteria that failed."""
        return [c.name for c in self.checks if not c.passed]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GateError(f"{path} is missing") from exc
    if not isinstance(doc, dict):
        raise GateError(f"{path} is not a JSON object")
    return doc


def _locked_split(base: Path, plan: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The plan's locked split (hashes checked): the ONNX feeds and the labels or targets."""
    try:
        data = locked.load(base, plan)
    except ValueError as exc:
        raise GateError(str(exc)) from exc
    return {k[3:]: data[k] for k in data if k.startswith("in:")}, data["y"]


def _session(folder: Path, manifest: Mapping[str, Any]) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(folder / manifest["onnx"]["file"]), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def _predict(sess: Any, manifest: Mapping[str, Any], feeds: Mapping[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """The model's score per case: its first output, or that output's positive-label column ``[N, n_labels]``."""
    out_name = sess.get_outputs()[0].name
    n = len(next(iter(feeds.values())))
    parts = [sess.run([out_name], {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)]
    out = np.concatenate(parts).astype(np.float64)
    if out.ndim == 2 and out.shape[1] > 1:
        labels = list(manifest["outputs"]["labels"])
        out = out[:, labels.index(manifest["outputs"]["positive_label"])]
    return out.ravel()


def _integrity(folder: Path, manifest: Mapping[str, Any], label: str) -> Check:
    want = manifest["onnx"]["sha256"]
    got = sha256_file(folder / manifest["onnx"]["file"])
    return Check(
        f"integrity_{label}",
        f"sha256 of the served {label} model.onnx equals its manifest",
        got[:16] + "…",
        got == want,
    )


def _parity(folder: Path, manifest: Mapping[str, Any], sess: Any) -> Check:
    """The candidate's parity record holds and ONNX Runtime reproduces its stored Keras outputs now."""
    par = manifest.get("parity") or {}
    ref_file = folder / str(par.get("reference", "parity.npz"))
    if not par or not ref_file.is_file():
        return Check("parity", "parity record and parity.npz present", "missing", False)
    tol, rtol = float(par.get("tolerance", 0.0)), float(par.get("rtol", 0.0))
    recorded_ok = float(par.get("max_abs_diff", np.inf)) <= tol or rtol > 0
    with np.load(ref_file, allow_pickle=False) as z:
        feeds = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
        expected = {k[4:]: z[k] for k in z.files if k.startswith("out:")}
    got = dict(zip(expected, sess.run(list(expected), feeds), strict=True))
    n = len(next(iter(feeds.values())))
    per = manifest["parity"].get("per_output", {})
    worst: dict[str, float] = {}
    ok = recorded_ok
    for name, ref in expected.items():
        atol = float(per.get(name, {}).get("tolerance", tol)) if isinstance(per.get(name), dict) else tol
        diff = np.abs(got[name].astype(np.float64) - ref.astype(np.float64))
        worst[name] = float(diff.max()) if diff.size else 0.0
        ok = ok and got[name].shape == ref.shape and bool(np.all(diff <= atol + rtol * np.abs(ref)))
    return Check(
        "parity",
        f"recorded max abs(onnx - keras) <= {tol:g}{f' + {rtol:g} x abs(keras)' if rtol else ''}, and ONNX Runtime "
        "reproduces parity.npz now",
        f"recorded {float(par.get('max_abs_diff', np.nan)):.2e}, re-run "
        + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
        + f" (n={n})",
        ok,
    )


def _contract(live: Mapping[str, Any], cand: Mapping[str, Any]) -> Check:
    """Same request and response contract: what a client sends and reads does not change."""
    diffs: list[str] = []
    for k in CONTRACT_KEYS:
        if live.get(k) != cand.get(k):
            diffs.append(k)
    for side in ("inputs", "outputs"):
        if live["onnx"].get(side) != cand["onnx"].get(side):
            diffs.append(f"onnx.{side}")
    strip = [[{k: f.get(k) for k in INPUT_KEYS} for f in m.get("inputs", [])] for m in (live, cand)]
    if strip[0] != strip[1]:
        diffs.append("inputs")
    if {k: live["outputs"].get(k) for k in OUTPUT_KEYS} != {k: cand["outputs"].get(k) for k in OUTPUT_KEYS}:
        diffs.append("outputs")
    for block in ("vitals", "image"):
        a, b = ({k: v for k, v in (m.get(block) or {}).items() if k not in TASK_BLOCK_FITTED} for m in (live, cand))
        if a != b:
            diffs.append(block)
    return Check(
        "contract",
        "same task, ONNX inputs/outputs, input names/units/ranges, labels and preprocessing as the live version",
        "identical" if not diffs else "differs: " + ", ".join(diffs),
        not diffs,
    )


def _criterion(c: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]) -> Check:
    metric, compare, bound, op, value = c["metric"], c["compare"], c["bound"], c["op"], float(c["value"])
    if metric not in metrics or compare not in ("candidate", "paired_difference", "live") or op not in OPS:
        raise GateError(f"criterion {c.get('name')!r} cannot be evaluated: {metric}/{compare}/{op}")
    stat = metrics[metric][compare]
    if bound == "value":
        observed = float(stat["value"])
    elif bound in ("ci95_lower", "ci95_upper"):
        observed = float(stat["ci95"][0 if bound == "ci95_lower" else 1])
    else:
        raise GateError(f"criterion {c.get('name')!r}: unknown bound {bound!r}")
    what = {"candidate": "candidate", "paired_difference": "candidate - live", "live": "live"}[compare]
    where = {"value": "", "ci95_lower": " (lower 95% bound)", "ci95_upper": " (upper 95% bound)"}[bound]
    shown = f"{observed:+.4f}" if compare == "paired_difference" else f"{observed:.4f}"
    return Check(str(c["name"]), f"{metric} {what}{where} {op} {value:g}", shown, OPS[op](observed, value))


# --- the gate ---------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def promote(
    model_id: str,
    version: str,
    *,
    root: Path = Path("layers/models"),
    n_boot: int | None = None,
    now: Callable[[], str] = _now,
) -> Outcome:
    """Run the gate for ``model_id`` ``version``; write the report; update live.json only on a pass.

    Parameters
    ----------
    model_id, version
        The candidate: ``<root>/<model_id>/<version>/``.
    root
        The models root (a temporary copy in tests).
    n_boot
        Bootstrap resamples; the plan's ``bootstrap.resamples`` when ``None``.
    now
        Clock for ``promoted_at`` and the report.

    Returns
    -------
    Outcome

    Raises
    ------
    GateError
        When the gate cannot run at all (nothing is written then).
    """
    base = Path(root) / model_id
    plan = _read_json(base / PLAN_FILE)
    live_doc = _read_json(base / LIVE_FILE)
    live_v = str(live_doc.get("live", ""))
    cand_dir, live_dir = base / version, base / live_v
    if not (cand_dir / "manifest.json").is_file():
        raise GateError(f"{model_id} {version}: no such version folder")
    if not (live_dir / "manifest.json").is_file():
        raise GateError(f"{model_id}: live version {live_v!r} has no folder")
    if version == live_v or version in live_doc.get("retired", []):
        # nothing to decide, and its promotion report must not be overwritten
        raise GateError(f"{model_id} {version} is {'live' if version == live_v else 'retired'}, not a candidate")
    cand_m, live_m = _read_json(cand_dir / "manifest.json"), _read_json(live_dir / "manifest.json")
    feeds, y = _locked_split(base, plan)

    outcome = Outcome(model_id, version, live_v, promoted=False)
    checks = outcome.checks
    checks += [_integrity(live_dir, live_m, "live"), _integrity(cand_dir, cand_m, "candidate")]
    sess_live, sess_cand = _session(live_dir, live_m), _session(cand_dir, cand_m)
    if plan.get("parity_required", True):
        checks.append(_parity(cand_dir, cand_m, sess_cand))
    if plan.get("contract_required", True):
        checks.append(_contract(live_m, cand_m))

    kind = str(plan.get("kind", live_m.get("kind")))
    p_live, p_cand = _predict(sess_live, live_m, feeds), _predict(sess_cand, cand_m, feeds)
    boot = plan.get("bootstrap", {})
    outcome.metrics = paired_bootstrap(
        y,
        p_live,
        p_cand,
        metric_fns(kind, _threshold(live_m)),
        metric_fns(kind, _threshold(cand_m)),
        n_boot=int(n_boot or boot.get("resamples", 2000)),
        seed=int(boot.get("seed", plan["locked_test"]["seed"])),
    )
    checks += [_criterion(c, outcome.metrics) for c in plan["criteria"]]
    outcome.band = _band_of(plan, cand_m, p_cand, version)

    outcome.promoted = not outcome.failed
    when = now()
    outcome.band["recorded_at"] = when
    outcome.report = _write_report(outcome, plan, live_m, cand_m, base, when)
    _plot(outcome, plan, cand_dir / PLOT_FILE)
    if outcome.promoted:
        history = list(live_doc.get("history", []))
        history.append({"version": version, "promoted_at": when, "report": f"{version}/{REPORT_FILE}"})
        new_doc = {
            "live": version,
            "retired": list(live_doc.get("retired", [])),
            "history": history,
            "band": outcome.band,
        }
        _write_live(base, new_doc)
    return outcome


def _write_live(base: Path, doc: Mapping[str, Any]) -> None:
    tmp = base / (LIVE_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, base / LIVE_FILE)


def record_band(model_id: str, *, root: Path = Path("layers/models"), now: Callable[[], str] = _now) -> dict[str, Any]:
    """Record the band of the version live now in ``live.json`` (nothing else changes); return it.

    For versions made live before bands were recorded at promotion. Same locked split,
    same hashes checked, same computation as :func:`promote`.
    """
    base = Path(root) / model_id
    plan = _read_json(base / PLAN_FILE)
    live_doc = _read_json(base / LIVE_FILE)
    live_v = str(live_doc.get("live", ""))
    live_dir = base / live_v
    if not (live_dir / "manifest.json").is_file():
        raise GateError(f"{model_id}: live version {live_v!r} has no folder")
    live_m = _read_json(live_dir / "manifest.json")
    if not _integrity(live_dir, live_m, "live").passed:
        raise GateError(f"{model_id} {live_v}: model.onnx does not match its manifest")
    feeds, _ = _locked_split(base, plan)
    band = _band_of(plan, live_m, _predict(_session(live_dir, live_m), live_m, feeds), live_v)
    band["recorded_at"] = now()
    _write_live(base, {**live_doc, "band": band})
    return band


# --- report ----------------------------------------------------------------------------------
def _fmt(v: Mapping[str, Any]) -> str:
    return f"{v['value']:.4f} ({v['ci95'][0]:.4f} – {v['ci95'][1]:.4f})"


def _write_report(
    o: Outcome,
    plan: Mapping[str, Any],
    live_m: Mapping[str, Any],
    cand_m: Mapping[str, Any],
    base: Path,
    when: str,
) -> Path:
    import onnxruntime as ort

    lt = plan["locked_test"]
    verdict = (
        f"**PROMOTED**: {o.candidate} is now live (live.json updated; {o.live} stays a candidate)."
        if o.promoted
        else f"**REFUSED**: failed {', '.join(o.failed)}. live.json untouched; {o.live} stays live."
    )
    n_boot = next(iter(o.metrics.values()))["n_boot"] if o.metrics else 0
    lines = [
        f"# Promotion gate: `{o.model}` {o.candidate} (candidate) vs {o.live} (live)",
        "",
        f"Verdict: {verdict}",
        "",
        f"- Plan: `{PLAN_FILE}` (plan version {plan.get('plan_version')}, declared {plan.get('declared')}).",
        f"- Locked test split: `{lt.get('file')}`, n = {lt['n']}, seed {lt['seed']}, indices sha256 "
        f"`{lt['indices_sha256'][:16]}…`, data sha256 `{lt['data_sha256'][:16]}…` (both verified). "
        f"Derivation: {lt.get('derivation')}.",
        f"- Scored by ONNX Runtime {ort.__version__} on the served files: live `{live_m['onnx']['sha256'][:16]}…`, "
        f"candidate `{cand_m['onnx']['sha256'][:16]}…`.",
        f"- Paired percentile bootstrap: {n_boot} resamples (seed {plan.get('bootstrap', {}).get('seed')}); "
        "each resample scores both versions on the same cases. Difference = candidate − live.",
        f"- Operating points: live threshold {live_m['outputs'].get('threshold')}, candidate threshold "
        f"{cand_m['outputs'].get('threshold')} (each version's own, from its manifest)."
        if live_m.get("kind") == "classification"
        else "- Regression: metrics in the output's units.",
        f"- Evaluated at {when}.",
        "",
        "## Metrics on the locked split (95% CI)",
        "",
        f"| metric | live {o.live} | candidate {o.candidate} | paired difference |",
        "|---|---|---|---|",
    ]
    for k, m in o.metrics.items():
        lines.append(f"| {k} | {_fmt(m['live'])} | {_fmt(m['candidate'])} | {_fmt(m['paired_difference'])} |")
    lines += ["", "## Criteria and checks", "", "| name | rule | observed | result |", "|---|---|---|---|"]
    for c in o.checks:
        lines.append(f"| {c.name} | {c.rule} | {c.observed} | {'pass' if c.passed else '**FAIL**'} |")
    if o.band:
        b = o.band
        lines += [
            "",
            "## Prediction-distribution band",
            "",
            f"{o.candidate}'s `{b['metric']}` on the locked split is {b['center']:g}; the average over a period "
            f"of {b['window']} predictions falls in **[{b['low']:g}, {b['high']:g}]** in {b['coverage']:.1%} of "
            f"{b['resamples']} resampled periods. "
            + (
                "Recorded in live.json: the canary's band alarms use it (`python -m medserve.deploy_hooks bands`)."
                if o.promoted
                else "Not recorded (the candidate was refused)."
            ),
        ]
    lines += ["", f"![paired differences]({PLOT_FILE})", ""]
    path = base / o.candidate / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _plot(o: Outcome, plan: Mapping[str, Any], path: Path) -> None:
    """Forest plot: each metric's paired difference with its 95% interval and the plan's bound."""
    from model_export.plots import _pyplot, _save

    plt = _pyplot()
    names = list(o.metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.6), squeeze=False)
    bounds = {c["metric"]: float(c["value"]) for c in plan["criteria"] if c.get("compare") == "paired_difference"}
    failed = set(o.failed)
    crit_of = {c["metric"]: c["name"] for c in plan["criteria"]}
    for ax, k in zip(axes[0], names, strict=True):
        d = o.metrics[k]["paired_difference"]
        bad = crit_of.get(k) in failed
        ax.errorbar(
            [0], [d["value"]], yerr=[[d["value"] - d["ci95"][0]], [d["ci95"][1] - d["value"]]],
            fmt="o", color="tab:red" if bad else "tab:blue", capsize=4,
        )  # fmt: skip
        ax.axhline(0, color="grey", lw=0.8)
        if k in bounds:
            ax.axhline(bounds[k], color="tab:orange", ls="--", lw=1, label="plan bound")
            ax.legend(fontsize=6, loc="best")
        ax.set_xticks([])
        ax.set_title(k, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{o.model}: {o.candidate} − {o.live} (paired, 95% CI)", fontsize=8)
    _save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit status (0 promoted, 1 refused, 2 could not run)."""
    ap = argparse.ArgumentParser(prog="python -m model_export.promote", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, metavar="ID")
    ap.add_argument("--version", metavar="X.Y.Z", help="the candidate to gate (required unless --record-band)")
    ap.add_argument(
        "--record-band", action="store_true", help="record the live version's band in live.json; no promotion"
    )
    ap.add_argument("--root", type=Path, default=Path("layers/models"))
    ap.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: the plan's)")
    args = ap.parse_args(argv)
    if args.record_band:
        try:
            b = record_band(args.model, root=args.root)
        except GateError as exc:
            print(f"promote: cannot record the band: {exc}", file=sys.stderr)
            return 2
        print(f"band {args.model} {b['version']}: {b['metric']} [{b['low']:g}, {b['high']:g}] recorded in live.json")
        return 0
    if not args.version:
        ap.error("--version is required (or --record-band)")
    try:
        o = promote(args.model, args.version, root=args.root, n_boot=args.n_boot)
    except GateError as exc:
        print(f"promote: cannot run the gate: {exc}", file=sys.stderr)
        return 2
    for k, m in o.metrics.items():
        print(f"{k:12s} live {_fmt(m['live'])}  candidate {_fmt(m['candidate'])}  diff {_fmt(m['paired_difference'])}")
    if o.promoted:
        b = o.band
        print(f"PROMOTED {o.model} {o.candidate} (was {o.live}); report {o.report}")
        print(f"band {b['metric']} [{b['low']:g}, {b['high']:g}] recorded in live.json")
        return 0
    for c in o.checks:
        if not c.passed:
            print(f"failed {c.name}: {c.rule}; observed {c.observed}", file=sys.stderr)
    print(f"REFUSED {o.model} {o.candidate}: failed {', '.join(o.failed)}; report {o.report}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
