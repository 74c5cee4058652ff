"""``vitals-deterioration``: a small GRU over vital-sign sequences, beside NEWS2.

The model reads one patient's observations (the seven NEWS2 inputs plus the hours
between observations, see :mod:`medserve.tasks.vitals.features`) and outputs the probability
of deterioration within :data:`HORIZON_HOURS` hours after the last observation.

Data
----
With ``csv=`` a CSV of real vitals is used, one row per observation, columns
``patient_id, time (ISO-8601), heart_rate, respiratory_rate, spo2, temperature,
systolic_bp, consciousness (A/C/V/P/U), supplemental_oxygen (true/false/1/0),
outcome (0/1)``. ``outcome`` is read from the last row (in time) of each patient:
1 = deterioration within the horizon after that row. Empty cells are missing
readings: carried forward from the patient's previous row, or, on a patient's first
row, filled with the population normal value (:data:`NORMAL`). Patients with more than
:data:`~medserve.tasks.vitals.features.MAX_OBSERVATIONS` rows keep their last ones.

Without a CSV a synthetic cohort is generated (:func:`synthetic_cohort`, documented
there) and the manifest says ``"synthetic": true``.

Evaluation
----------
Stratified 64/16/20 split by patient. The held-out AUC (95% bootstrap CI) of the model
is reported next to the AUC of NEWS2 of the last observation on the same patients,
and the paired bootstrap interval of their difference, so a reader sees whether the
sequence model adds anything over the chart.
"""

from __future__ import annotations

import csv as csv_module
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from model_export.calibration import reliability_table
from model_export.cards import render_card
from model_export.export import OPSET, export_onnx, onnx_io, parity_gate, sha256_file, versions
from model_export.manifest import write_model_folder
from model_export.metrics import DEFAULT_N_BOOT, binary_metrics, bootstrap_ci, choose_threshold
from model_export.plots import plot_calibration, plot_roc
from model_export.splits import SEED, set_seeds, stratified_split

try:  # medserve lives in the common layer; put it on the path when run as `python -m model_export`
    from medserve.tasks.vitals import features as feat
    from medserve.tasks.vitals.news2 import news2
except ImportError:  # pragma: no cover - depends on how the module is launched
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "common"))
    from medserve.tasks.vitals import features as feat
    from medserve.tasks.vitals.news2 import news2

MODEL_ID = "vitals-deterioration"
VERSION = "1.0.0"
HORIZON_HOURS = 24
GRU_UNITS = 32
PARITY_LENGTHS = (1, 12, 500)
N_PATIENTS, N_PATIENTS_QUICK = 2500, 600

#: Population "normal" values used to fill a patient's missing first reading.
NORMAL: dict[str, Any] = dict(feat.REFERENCE_OBSERVATION)

log = logging.getLogger("model_export.vitals")


@dataclass
class Cohort:
    """One sequence per patient plus its label and the NEWS2 of its last observation."""

    sequences: list[np.ndarray]  # [T_i, F] float32 (medserve.tasks.vitals.features.COLUMNS)
    y: np.ndarray  # [N] int, 1 = deterioration within the horizon
    news2_last: np.ndarray  # [N] int
    source: dict[str, Any]


# --- data -------------------------------------------------------------------------------
def _carry_forward(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill ``None`` readings with the previous row's value (first row: :data:`NORMAL`)."""
    out: list[dict[str, Any]] = []
    prev = dict(NORMAL)
    for r in rows:
        filled = {k: (prev[k] if r.get(k) is None else r[k]) for k in NORMAL}
        out.append(filled)
        prev = filled
    return out


Patient = tuple[list[datetime], list[dict[str, Any]], int]


def _cohort_from_patients(patients: list[Patient], source: dict[str, Any]) -> Cohort:
    seqs, ys, scores = [], [], []
    for times, rows, outcome in patients:
        rows = _carry_forward(rows)
        seqs.append(feat.encode(rows, times))
        ys.append(int(outcome))
        scores.append(news2(rows[-1])["score"])
    return Cohort(seqs, np.asarray(ys, dtype=int), np.asarray(scores, dtype=int), source)


def synthetic_cohort(n_patients: int, *, seed: int = SEED) -> Cohort:
    """Generate a synthetic ward cohort with documented physiology.

    Physiology (per patient):

    - **Baseline**: heart rate ~ N(78, 10), respiration rate ~ N(16, 2), SpO2 ~ N(97, 1.3),
      temperature ~ N(36.8, 0.35) °C, systolic ~ N(125, 15) mmHg, alert, on air. 20% have a
      chronically abnormal but *stable* baseline (COPD-like SpO2 88-92% with oxygen in half
      of them, tachycardia 95-112/min, or low systolic 92-104 mmHg): NEWS2 scores them
      high although they do not deteriorate.
    - **Stable patients** (70%) fluctuate around their baseline (reading noise: HR ±6,
      RR ±1.5, SpO2 ±1, temperature ±0.25, SBP ±8, 1 SD) and 15% have a transient fever
      that resolves.
    - **Deteriorating patients** (30%): from an onset time, severity ``s`` ramps linearly
      from 0 to 1 over 6-36 h; at severity ``s``: HR +35s, RR +10s, SpO2 −7s, SBP −35s,
      temperature +1.8s (60%, sepsis-like) or −1.0s, P(consciousness not Alert) = 0.5s²
      (C, V, P or U), and oxygen started once SpO2 falls below 93% (80% chance).
      The record ends 0.5-20 h before the event (label 1). One in eight deteriorating
      patients is cut 26-48 h before the event and labelled 0 (not within the horizon).
    - **Sampling** is irregular: gaps ~ Exponential(mean 4 h), 1.5 h once severity > 0.3
      (staff observe sicker patients more often); 1 to 60 observations over 6-72 h.
    - **Missing readings**: each numeric reading is missing with probability 0.08 and
      carried forward from the previous observation (the first from :data:`NORMAL`).
    - Readings are rounded to recorded precision (integers; temperature 0.1 °C).

    The signal the GRU can use beyond NEWS2 (trends, sampling frequency, chronic
    baselines) is built into this generator; a gain here says nothing about real wards.

    Parameters
    ----------
    n_patients
        Number of patients (one sequence each).
    seed
        Random seed.

    Returns
    -------
    Cohort
    """
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, 8, 0)
    patients: list[Patient] = []
    for _ in range(n_patients):
        base = {
            "heart_rate": rng.normal(78, 10),
            "respiratory_rate": rng.normal(16, 2),
            "spo2": min(99.5, rng.normal(97, 1.3)),
            "temperature": rng.normal(36.8, 0.35),
            "systolic_bp": rng.normal(125, 15),
        }
        oxygen_base = False
        if rng.random() < 0.20:
            kind = rng.integers(3)
            if kind == 0:
                base["spo2"] = rng.uniform(88, 92)
                oxygen_base = bool(rng.random() < 0.5)
            elif kind == 1:
                base["heart_rate"] = rng.uniform(95, 112)
            else:
                base["systolic_bp"] = rng.uniform(92, 104)
        deteriorating = rng.random() < 0.30
        duration = rng.uniform(6, 72)
        onset = rng.uniform(0.0, duration) if deteriorating else math.inf
        ramp = rng.uniform(6, 36)
        sepsis = rng.random() < 0.6
        fever_at = rng.uniform(0, duration) if (not deteriorating and rng.random() < 0.15) else math.inf
        o2_started = oxygen_base
        t = 0.0
        times: list[datetime] = []
        rows: list[dict[str, Any]] = []
        while t <= duration and len(rows) < 60:
            s = float(np.clip((t - onset) / ramp, 0.0, 1.0)) if deteriorating else 0.0
            fever = 1.2 * math.exp(-(((t - fever_at) / 4.0) ** 2)) if math.isfinite(fever_at) else 0.0
            spo2 = base["spo2"] - 7 * s + rng.normal(0, 1.0)
            if not o2_started and spo2 < 93 and rng.random() < 0.8:
                o2_started = True
            level = "A"
            if rng.random() < 0.5 * s * s:
                level = str(rng.choice(["C", "V", "P", "U"], p=[0.5, 0.3, 0.15, 0.05]))
            row: dict[str, Any] = {
                "heart_rate": round(base["heart_rate"] + 35 * s + 8 * fever + rng.normal(0, 6)),
                "respiratory_rate": round(base["respiratory_rate"] + 10 * s + rng.normal(0, 1.5)),
                "spo2": round(float(np.clip(spo2, 70, 100))),
                "temperature": round(
                    base["temperature"] + (1.8 if sepsis else -1.0) * s + fever + rng.normal(0, 0.25), 1
                ),
                "systolic_bp": round(base["systolic_bp"] - 35 * s + rng.normal(0, 8)),
                "consciousness": level,
                "supplemental_oxygen": o2_started,
            }
            if rows:
                for k in feat.NUMERIC_FIELDS:
                    if rng.random() < 0.08:
                        row[k] = None
            rows.append(row)
            times.append(start + timedelta(hours=t))
            t += rng.exponential(1.5 if s > 0.3 else 4.0) + 0.1
        outcome = 1 if deteriorating else 0
        if deteriorating and rng.random() < 0.125:
            outcome = 0  # event 26-48 h after the last observation: outside the horizon
        patients.append((times, rows, outcome))
    return _cohort_from_patients(
        patients,
        {
            "name": "synthetic ward cohort (generated in code)",
            "source": "model_export/vitals.py synthetic_cohort(), seed " + str(seed),
            "license": "generated; no real patient data",
            "synthetic": True,
        },
    )


def _parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in {"true", "1", "yes", "y", "t"}:
        return True
    if v in {"false", "0", "no", "n", "f"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def load_csv(path: Path, *, min_patients: int = 20) -> Cohort:
    """Read a vitals CSV (columns in the module docstring) into a :class:`Cohort`.

    Parameters
    ----------
    path
        The CSV file.
    min_patients
        Fewer patients than this cannot be split into train/validation/test.

    Returns
    -------
    Cohort
    """
    required = {"patient_id", "time", *feat.NUMERIC_FIELDS, "consciousness", "supplemental_oxygen", "outcome"}
    by_patient: dict[str, list[tuple[datetime, dict[str, Any], int]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv_module.DictReader(f)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, r in enumerate(reader, start=2):
            try:
                row: dict[str, Any] = {}
                for k in feat.NUMERIC_FIELDS:
                    row[k] = float(r[k]) if r[k].strip() else None
                c = r["consciousness"].strip().upper()
                row["consciousness"] = c or None
                if c and c not in feat.ACVPU_CODE:
                    raise ValueError(f"consciousness {c!r} is not ACVPU")
                row["supplemental_oxygen"] = (
                    _parse_bool(r["supplemental_oxygen"]) if r["supplemental_oxygen"].strip() else None
                )
                when = datetime.fromisoformat(r["time"].strip())
                outcome = int(r["outcome"])
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from exc
            if outcome not in (0, 1):
                raise ValueError(f"{path}:{line}: outcome must be 0 or 1")
            by_patient.setdefault(r["patient_id"], []).append((when, row, outcome))
    patients = []
    for pid in sorted(by_patient):
        obs = sorted(by_patient[pid], key=lambda x: x[0])[-feat.MAX_OBSERVATIONS :]
        patients.append(([o[0] for o in obs], [o[1] for o in obs], obs[-1][2]))
    if len(patients) < min_patients:
        raise ValueError(f"{path}: need at least {min_patients} patients, got {len(patients)}")
    return _cohort_from_patients(
        patients,
        {"name": path.name, "source": str(path), "license": "as supplied", "synthetic": False},
    )


@dataclass(frozen=True)
class Variant:
    """One version of the model: everything but the shared data, calibration, export and card."""

    version: str
    created: str  # manifest "created": the day this version was first exported
    name: str  # in prose: "a {name} over ward vital-sign sequences", "{name} probability"
    architecture: str
    make: Callable[[np.ndarray, np.ndarray], tuple[Any, Any, Any]]  # (train_x, train_m) -> (logit, calib, prob)
    learning_rate: float
    epochs: int = 40
    quick_epochs: int = 4
    change_note: str = ""  # the card's "Changes from the live version" section (empty: none)


def split(cohort: Cohort, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 64/16/20 train/validation/test split by patient (every version uses this one)."""
    return stratified_split(cohort.y, seed=seed)


# --- model ------------------------------------------------------------------------------
def _build_keras(train_x: np.ndarray, train_m: np.ndarray) -> tuple[Any, Any, Any]:
    """Return ``(logit_model, calibrator_layer, prob_model)`` sharing weights."""
    import keras

    n_f = len(feat.COLUMNS)
    x_in = keras.Input((None, n_f), name="observations")
    m_in = keras.Input((None,), name="mask")
    norm = keras.layers.Normalization(axis=-1, name="standardize")
    norm.adapt(train_x[train_m > 0.5])  # statistics of real (unpadded) observations only
    h = norm(x_in)
    h = keras.layers.GRU(GRU_UNITS, name="gru")(h, mask=keras.ops.greater(m_in, 0.5))
    h = keras.layers.Dense(16, activation="relu", name="hidden")(h)
    z = keras.layers.Dense(1, name="logit")(h)
    calib = keras.layers.Dense(1, activation="sigmoid", name="platt", trainable=False)
    p = calib(z)
    return keras.Model([x_in, m_in], z), calib, keras.Model([x_in, m_in], p)


GRU = Variant(
    version=VERSION,
    created="2026-11-23",
    name="GRU",
    architecture=f"Normalization -> GRU({GRU_UNITS}, masked) -> Dense(16, relu) -> Dense(1) -> Platt sigmoid",
    make=_build_keras,
    learning_rate=3e-3,
)
"""1.0.0: the GRU."""


def _news2_aucs(y: np.ndarray, p: np.ndarray, score: np.ndarray, n_boot: int) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(roc_auc_score(a, b[:, 0]) - roc_auc_score(a, b[:, 1]))

    both = np.column_stack([p, score.astype(float)])
    ge5 = (score >= 5).astype(float)

    def sens(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(b[a == 1])) if (a == 1).any() else float("nan")

    def spec(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(1 - b[a == 0])) if (a == 0).any() else float("nan")

    return {
        "news2_auc": bootstrap_ci(lambda a, b: float(roc_auc_score(a, b)), y, score.astype(float), n_boot=n_boot),
        "auc_minus_news2_auc": bootstrap_ci(diff, y, both, n_boot=n_boot),
        "news2_ge5_sensitivity": bootstrap_ci(sens, y, ge5, n_boot=n_boot),
        "news2_ge5_specificity": bootstrap_ci(spec, y, ge5, n_boot=n_boot),
    }


def _tiled_sequences(rng: np.random.Generator, sequences: Sequence[np.ndarray], n: int, t: int) -> np.ndarray:
    """``n`` held-out sequences repeated end to end to length ``t`` (parity at that length).

    Real-looking values keep the outputs away from 0 and 1, where a parity check would be vacuous.
    """
    out = np.empty((n, t, len(feat.COLUMNS)), dtype=np.float32)
    for k in range(n):
        seq = sequences[int(rng.integers(len(sequences)))]
        out[k] = np.concatenate([seq] * math.ceil(t / len(seq)))[:t]
        out[k, 0, -1] = 0.0  # the first observation has no predecessor
    return out


def build(out_root: Path, *, quick: bool = False, csv: Path | None = None, variant: Variant | None = None) -> Path:
    """Train, calibrate, export (behind the parity gate) and document the model.

    Parameters
    ----------
    out_root
        Models root; writes ``<out_root>/vitals-deterioration/<variant.version>/``.
    quick
        Small cohort, few epochs and bootstrap rounds (tests).
    csv
        A CSV of real vitals (module docstring); synthetic cohort when ``None``.
    variant
        The version to build: :data:`GRU` (1.0.0, the default) or another :class:`Variant`
        (e.g. ``model_export.vitals_transformer.TRANSFORMER``), trained on the same cohort and split.

    Returns
    -------
    pathlib.Path
        The model folder.
    """
    import keras
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression

    variant = variant or GRU
    t0 = time.perf_counter()
    set_seeds()
    cohort = load_csv(Path(csv)) if csv is not None else synthetic_cohort(N_PATIENTS_QUICK if quick else N_PATIENTS)
    synthetic = bool(cohort.source["synthetic"])
    n_boot = 200 if quick else DEFAULT_N_BOOT
    tr, va, te = split(cohort)
    x_all, m_all = feat.pad_batch(cohort.sequences)
    y_all = cohort.y.astype(np.float32)

    logit_model, calib, prob_model = variant.make(x_all[tr], m_all[tr])
    logit_model.compile(
        optimizer=keras.optimizers.Adam(variant.learning_rate), loss=keras.losses.BinaryCrossentropy(from_logits=True)
    )
    logit_model.fit(
        [x_all[tr], m_all[tr]],
        y_all[tr],
        validation_data=([x_all[va], m_all[va]], y_all[va]),
        epochs=variant.quick_epochs if quick else variant.epochs,
        batch_size=64,
        verbose=0,
        shuffle=True,
        callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)],
    )
    # Platt scaling on the validation split, folded into the graph (the "platt" layer).
    z_val = logit_model.predict([x_all[va], m_all[va]], verbose=0, batch_size=256).ravel()
    lr = LogisticRegression(C=1e6).fit(z_val[:, None], cohort.y[va])
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    calib.set_weights([np.array([[a]], dtype=np.float32), np.array([b], dtype=np.float32)])

    def predict(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.asarray(prob_model.predict([x, m], verbose=0, batch_size=256), dtype=np.float32)

    p_val = predict(x_all[va], m_all[va]).ravel()
    threshold, rule = choose_threshold(cohort.y[va], p_val, "youden")
    x_te, m_te = feat.pad_batch([cohort.sequences[i] for i in te])
    p_te_keras = predict(x_te, m_te)
    p_te = p_te_keras.ravel()
    y_te = cohort.y[te]
    metrics = binary_metrics(y_te, p_te, threshold, n_boot=n_boot)
    metrics.update(_news2_aucs(y_te, p_te, cohort.news2_last[te], n_boot))

    out = Path(out_root) / MODEL_ID / variant.version
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    spec = [
        tf.TensorSpec([None, None, len(feat.COLUMNS)], tf.float32, name="observations"),
        tf.TensorSpec([None, None], tf.float32, name="mask"),
    ]
    export_onnx(prob_model, spec, onnx_path, output_names=["probability"])

    # Parity gate: held-out test set (padded, mixed lengths) and held-out sequences tiled to several lengths.
    parity = parity_gate({"probability": p_te_keras}, onnx_path, {"observations": x_te, "mask": m_te})
    rng = np.random.default_rng(SEED)
    per_length: dict[str, float] = {}
    for t in PARITY_LENGTHS:
        xr = _tiled_sequences(rng, [cohort.sequences[i] for i in te], 4, t)
        mr = np.ones((4, t), dtype=np.float32)
        feeds = {"observations": xr, "mask": mr}
        res = parity_gate({"probability": predict(xr, mr)}, onnx_path, feeds)
        per_length[str(t)] = res["max_abs_diff"]
    parity["per_length"] = per_length
    parity["max_abs_diff"] = max([parity["max_abs_diff"], *per_length.values()])
    parity.pop("per_output", None)

    plot_roc(y_te, p_te, out / "roc.png", "vitals-deterioration (test)")
    plot_calibration(y_te, p_te, out / "calibration.png", "vitals-deterioration (test)")
    x_tr_real = x_all[tr][m_all[tr] > 0.5]
    inputs = []
    units = {s["name"]: s.get("unit") for s in feat.FIELD_SPECS}
    descriptions = {
        s["name"]: s["description"] + (f"; {s['encoding']}" if "encoding" in s else "") for s in feat.FIELD_SPECS
    }
    ranges = {s["name"]: (s.get("min"), s.get("max")) for s in feat.FIELD_SPECS}
    for j, name in enumerate(feat.COLUMNS):
        lo, hi = ranges.get(name, (None, None))
        if name == "consciousness":
            lo, hi = 0.0, 4.0
        elif name == "supplemental_oxygen":
            lo, hi = 0.0, 1.0
        elif name == "dt_hours":
            lo, hi = 0.0, feat.DT_CAP_HOURS
        inputs.append(
            {
                "name": name,
                "dtype": "float32",
                "unit": {"consciousness": "ACVPU ordinal", "supplemental_oxygen": "0/1", "dt_hours": "h"}.get(
                    name, units.get(name)
                ),
                "description": descriptions.get(name, "hours since the previous observation (0 for the first)"),
                "min": lo,
                "max": hi,
                "train_min": float(x_tr_real[:, j].min()),
                "train_max": float(x_tr_real[:, j].max()),
                "train_mean": float(x_tr_real[:, j].mean()),
                "allowed": None,
            }
        )
    io = onnx_io(onnx_path)
    lengths = np.array([len(s) for s in cohort.sequences])
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "created": variant.created,
        "id": MODEL_ID,
        "version": variant.version,
        "task": "vitals",
        "kind": "classification",
        "synthetic": synthetic,
        "intended_use": (
            f"Demonstrates a {variant.name} over ward vital-sign sequences that estimates the probability of "
            f"deterioration within {HORIZON_HOURS} h, shown beside NEWS2; research and engineering demo."
        ),
        "not_for_clinical_use": (
            (
                "Trained and evaluated only on a SYNTHETIC cohort generated in code; its numbers "
                "describe the generator, not patients. "
                if synthetic
                else "Trained on the supplied CSV without external validation. "
            )
            + "It has no regulatory clearance, no prospective validation and no calibration on any real "
            "ward; NEWS2 by the RCP chart remains the clinical standard."
        ),
        "onnx": {
            "file": "model.onnx",
            "sha256": "",
            "opset": OPSET,
            "inputs": io["inputs"],
            "outputs": io["outputs"],
        },
        "inputs": inputs,
        "preprocessing": {
            "standardization": "in_graph",
            "encoding": "medserve.tasks.vitals.features.encode: one row per observation, columns as in inputs",
            "padding": "right-padded with mask 0 when sequences share a batch; mask 1 for real observations",
            "missing_training_readings": "carried forward per patient; first row from population normals",
        },
        "outputs": {
            "labels": ["no_deterioration", "deterioration"],
            "positive_label": "deterioration",
            "threshold": threshold,
            "threshold_rule": rule,
            "unit": None,
            "target": f"deterioration within {HORIZON_HOURS} h after the last observation",
        },
        "calibration": {
            "method": "platt",
            "params": {"a": a, "b": b, "fitted_on": "validation split", "in_graph": True},
            "ece": metrics["ece"]["value"],
            "reliability": reliability_table(y_te, p_te),
        },
        "training_data": {
            **cohort.source,
            "n_total": len(cohort.y),
            "n_train": len(tr),
            "n_validation": len(va),
            "n_test": len(te),
            "split": f"stratified by outcome, one sequence per patient, seed {SEED}",
            "prevalence": float(cohort.y.mean()),
            "observations_per_patient": {
                "min": int(lengths.min()),
                "median": float(np.median(lengths)),
                "max": int(lengths.max()),
            },
        },
        "metrics": metrics,
        "parity": parity,
        "files": {"card": "card.md", "roc": "roc.png", "calibration": "calibration.png"},
        "created_with": versions(),
        "vitals": {
            "features": feat.FIELD_SPECS,
            "columns": list(feat.COLUMNS),
            "horizon_hours": HORIZON_HOURS,
            "max_observations": feat.MAX_OBSERVATIONS,
            "reference_observation": NORMAL,
            "threshold": threshold,
            "news2": "RCP 2017, SpO2 scale 1, last observation; values rounded half up to chart precision",
            "explain": "occlusion over windows of consecutive observations, carried forward (see service)",
        },
        "architecture": variant.architecture,
    }
    manifest["onnx"]["sha256"] = sha256_file(onnx_path)  # for the card; write_model_folder re-checks
    sections = _card_sections(manifest, synthetic, variant.name)
    if variant.change_note:
        sections = {"Changes from the live version": variant.change_note, **sections}
    card = render_card(manifest, extra_sections=sections)
    write_model_folder(
        out,
        manifest,
        card,
        {
            "in:observations": x_te,
            "in:mask": m_te,
            "out:probability": p_te_keras,
        },
    )
    log.info(
        "vitals-deterioration: AUC %.3f vs NEWS2 %.3f in %.1f s",
        metrics["auc"]["value"],
        metrics["news2_auc"]["value"],
        time.perf_counter() - t0,
    )
    return out


def _ci(m: Mapping[str, Any]) -> str:
    return f"{m['value']:.3f} (95% CI {m['ci95'][0]:.3f}–{m['ci95'][1]:.3f})"


def _card_sections(manifest: Mapping[str, Any], synthetic: bool, name: str = "GRU") -> dict[str, str]:
    met = manifest["metrics"]
    longest = manifest["training_data"]["observations_per_patient"]["max"]
    verdict = (
        "the interval of the difference excludes 0, so on THIS data the sequence model ranks patients "
        "better than NEWS2 alone"
        if met["auc_minus_news2_auc"]["ci95"][0] > 0
        else "the interval of the difference includes 0: no evidence that the model adds to NEWS2 here"
    )
    sections = {
        "Model vs NEWS2 (same held-out patients)": "\n".join(
            [
                "| score | AUC (95% CI) |",
                "|---|---|",
                f"| {name} probability | {_ci(met['auc'])} |",
                f"| NEWS2 of the last observation | {_ci(met['news2_auc'])} |",
                f"| difference (paired bootstrap) | {_ci(met['auc_minus_news2_auc'])} |",
                "",
                f"NEWS2 >= 5 (RCP 'medium' trigger): sensitivity {_ci(met['news2_ge5_sensitivity'])}, "
                f"specificity {_ci(met['news2_ge5_specificity'])}. Model at its threshold: sensitivity "
                f"{_ci(met['sensitivity'])}, specificity {_ci(met['specificity'])}.",
                "",
                f"Reading: {verdict}.",
            ]
        ),
        "Sequence input": (
            "`observations` is `[N, T, 8]` float32 with a dynamic time axis (1 to "
            f"{feat.MAX_OBSERVATIONS} observations per request) and `mask` `[N, T]` (1 = real observation, "
            "0 = right padding). Columns: "
            + ", ".join(f"`{c}`" for c in feat.COLUMNS)
            + ". Architecture: "
            + str(manifest["architecture"])
            + "."
        ),
        "Explanations": (
            "Occlusion over time windows: each window of consecutive observations is replaced by the "
            "observation before it (carried forward; the first window by the observation after it; a "
            "window covering the whole sequence by population normals), all windows in one batched run; "
            "weight = baseline probability − occluded probability."
        ),
        "Limitations": "\n".join(
            [
                "- "
                + (
                    "SYNTHETIC cohort: the trends, chronic baselines and sampling frequency that separate "
                    "the classes were written into the generator (model_export/vitals.py "
                    "`synthetic_cohort`). Any advantage over NEWS2 shown above is an artefact of that design "
                    "and says nothing about real patients."
                    if synthetic
                    else "Single supplied dataset, no external validation."
                ),
                "- Informative sampling: more frequent observations of sicker patients carry signal; a ward "
                "with other observation policies will see other behaviour.",
                "- NEWS2 SpO2 scale 2 (hypercapnic respiratory failure) is not supported.",
                f"- Sequences in training were at most {longest} observations long; the API accepts up to "
                f"{feat.MAX_OBSERVATIONS}.",
            ]
        ),
    }
    return sections


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience
    """``python -m model_export.vitals [--quick] [--csv FILE] [--out DIR]``."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("layers/models"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(build(args.out, quick=args.quick, csv=args.csv))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
