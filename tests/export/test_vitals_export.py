"""Export of ``vitals-deterioration``: synthetic default, CSV input, parity at several lengths (TensorFlow)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow", reason="export tests run in .venv-export (make test)")

from model_export import vitals  # noqa: E402

COLUMNS = [
    "patient_id", "time", "heart_rate", "respiratory_rate", "spo2", "temperature",
    "systolic_bp", "consciousness", "supplemental_oxygen", "outcome",
]  # fmt: skip


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vitals.build(tmp_path_factory.mktemp("models"), quick=True)


def write_csv(path: Path, n_patients: int = 80) -> Path:
    """A small vitals CSV: outcome-1 patients worsen over their last rows; some cells empty."""
    rng = np.random.default_rng(7)
    t0 = datetime(2026, 3, 1, 8, 0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for pid in range(n_patients):
            bad = pid % 3 == 0
            n = int(rng.integers(1, 9))
            for i in range(n):
                s = (i + 1) / n if bad else 0.0
                hr = round(float(78 + 35 * s + rng.normal(0, 4)))
                w.writerow([
                    f"p{pid:03d}", (t0 + timedelta(hours=3 * i)).isoformat(),
                    "" if (i == 1 and pid % 5 == 0) else hr,
                    round(float(16 + 10 * s)), round(float(97 - 6 * s)), round(float(36.9 + 1.5 * s), 1),
                    round(float(125 - 30 * s)), "V" if s > 0.9 else "A", "true" if s > 0.6 else "false",
                    int(bad),
                ])  # fmt: skip
    return path


def test_synthetic_build_writes_a_complete_folder(synthetic_folder: Path) -> None:
    for name in ("model.onnx", "manifest.json", "card.md", "parity.npz", "roc.png", "calibration.png"):
        assert (synthetic_folder / name).is_file(), name
    m = json.loads((synthetic_folder / "manifest.json").read_text())
    assert m["id"] == "vitals-deterioration"
    assert m["task"] == "vitals"
    assert m["synthetic"] is True
    assert m["training_data"]["synthetic"] is True
    v = m["vitals"]
    assert v["horizon_hours"] == 24
    assert v["max_observations"] == 500
    assert 0.0 < v["threshold"] < 1.0
    assert v["threshold"] == m["outputs"]["threshold"]
    assert {f["name"] for f in v["features"]} >= {"time", "heart_rate", "spo2", "consciousness"}
    spo2 = next(f for f in v["features"] if f["name"] == "spo2")
    assert (spo2["min"], spo2["max"], spo2["unit"]) == (0.0, 100.0, "%")
    # model AUC beside NEWS2 AUC on the same held-out patients, both with intervals
    for key in ("auc", "news2_auc", "auc_minus_news2_auc"):
        lo, hi = m["metrics"][key]["ci95"]
        assert lo <= m["metrics"][key]["value"] <= hi
    diff = m["metrics"]["auc"]["value"] - m["metrics"]["news2_auc"]["value"]
    assert m["metrics"]["auc_minus_news2_auc"]["value"] == pytest.approx(diff)
    card = (synthetic_folder / "card.md").read_text()
    assert "SYNTHETIC" in card
    assert "NEWS2 of the last observation" in card
    assert m["onnx"]["sha256"] in card


def test_onnx_has_a_dynamic_time_axis_and_passes_parity_at_several_lengths(synthetic_folder: Path) -> None:
    m = json.loads((synthetic_folder / "manifest.json").read_text())
    assert m["onnx"]["inputs"] == [
        {"name": "observations", "shape": [None, None, 8], "dtype": "float32"},
        {"name": "mask", "shape": [None, None], "dtype": "float32"},
    ]
    assert m["onnx"]["outputs"] == [{"name": "probability", "shape": [None, 1], "dtype": "float32"}]
    assert set(m["parity"]["per_length"]) == {"1", "12", "500"}
    assert max(m["parity"]["per_length"].values()) <= 1e-5
    sess = ort.InferenceSession(str(synthetic_folder / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = np.load(synthetic_folder / "parity.npz")
    got = sess.run(["probability"], {"observations": ref["in:observations"], "mask": ref["in:mask"]})[0]
    np.testing.assert_allclose(got, ref["out:probability"], atol=1e-5)
    assert (ref["in:mask"].sum(axis=1) < ref["in:mask"].shape[1]).any()  # padded rows are exercised


def test_padding_does_not_change_a_sequence_probability(synthetic_folder: Path) -> None:
    sess = ort.InferenceSession(str(synthetic_folder / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = np.load(synthetic_folder / "parity.npz")
    x, mask = ref["in:observations"], ref["in:mask"]
    i = int(np.argmin(mask.sum(axis=1)))
    t = int(mask[i].sum())
    alone = sess.run(None, {"observations": x[i : i + 1, :t], "mask": mask[i : i + 1, :t]})[0]
    padded = sess.run(None, {"observations": x[i : i + 1], "mask": mask[i : i + 1]})[0]
    np.testing.assert_allclose(alone, padded, atol=1e-6)


def test_synthetic_cohort_is_deterministic_and_documented() -> None:
    a, b = vitals.synthetic_cohort(50), vitals.synthetic_cohort(50)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences, strict=True))
    assert np.array_equal(a.y, b.y)
    assert a.source["synthetic"] is True
    assert 0 < a.y.mean() < 1
    lengths = [len(s) for s in a.sequences]
    assert min(lengths) >= 1
    assert len(set(lengths)) > 1  # irregular, variable length
    assert all(np.isfinite(s).all() for s in a.sequences)


def test_load_csv_carries_missing_readings_forward(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text(
        ",".join(COLUMNS) + "\n"
        "a,2026-01-01T08:00:00,,18,95,37.0,120,A,false,1\n"  # first HR missing: population normal
        "a,2026-01-01T10:30:00,101,,93,37.5,110,C,true,1\n"  # RR missing: carried forward
        "b,2026-01-01T09:00:00,70,14,98,36.8,130,A,0,0\n"
    )
    cohort = vitals.load_csv(path, min_patients=1)
    a = cohort.sequences[0]
    assert a[0, 0] == vitals.NORMAL["heart_rate"]
    assert a[1, 1] == 18
    assert a[1, 7] == pytest.approx(2.5)  # hours since previous
    assert a[1, 5] == 1  # C
    assert cohort.y.tolist() == [1, 0]
    assert cohort.news2_last.tolist() == [1 + 0 + 2 + 2 + 0 + 1 + 3, 0]  # HR RR SpO2 O2 T SBP C
    assert cohort.source["synthetic"] is False


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,2026-01-01T08:00:00,80,18,95,37.0,120,X,false,1", "ACVPU"),
        ("a,not-a-time,80,18,95,37.0,120,A,false,1", "v.csv:2"),
        ("a,2026-01-01T08:00:00,80,18,95,37.0,120,A,maybe,1", "boolean"),
        ("a,2026-01-01T08:00:00,80,18,95,37.0,120,A,false,2", "outcome"),
    ],
)
def test_load_csv_rejects_bad_rows_with_their_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "v.csv"
    path.write_text(",".join(COLUMNS) + "\n" + row + "\n")
    with pytest.raises(ValueError, match=message):
        vitals.load_csv(path, min_patients=1)


def test_load_csv_requires_the_documented_columns(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("patient_id,time,heart_rate\np,2026-01-01T08:00:00,80\n")
    with pytest.raises(ValueError, match="missing columns"):
        vitals.load_csv(path)


def test_build_trains_on_a_csv_when_given_one(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "ward.csv")
    folder = vitals.build(tmp_path / "models", quick=True, csv=csv_path)
    m = json.loads((folder / "manifest.json").read_text())
    assert m["synthetic"] is False
    assert m["training_data"]["n_total"] == 80
    assert m["training_data"]["source"] == str(csv_path)
    assert "news2_auc" in m["metrics"]
    assert "SYNTHETIC cohort" not in (folder / "card.md").read_text()
