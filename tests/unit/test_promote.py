"""The promotion gate (``model_export.promote``): NumPy + ONNX Runtime only, on temporary copies.

A better candidate passes and is marked live; a worse one (ONNX weights perturbed with
the ``onnx`` package) is refused with the failing criterion named, the report is written
and ``live.json`` is left byte for byte; a broken parity record, a changed contract or a
tampered locked split are caught. The committed plans, locked splits and live files are
checked for consistency too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from model_export import locked, promote

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "layers" / "models"
MODEL = "breast-cancer"
N_BOOT = 300


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _perturb(folder: Path, *, scale: float = 0.5, seed: int = 0, refresh_parity: bool = True) -> None:
    """Add Gaussian noise to every weight tensor of ``folder``'s ONNX file; keep the manifest's sha256 true.

    With ``refresh_parity`` the parity reference is re-recorded from the perturbed graph, as an
    export of a genuinely different (worse) model would record it.
    """
    manifest_path = folder / "manifest.json"
    m = json.loads(manifest_path.read_text())
    onnx_path = folder / m["onnx"]["file"]
    model = onnx.load(str(onnx_path))
    rng = np.random.default_rng(seed)
    touched = 0
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and a.size > 1:
            a = (a + rng.normal(0, scale * float(a.std()), a.shape)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(a, init.name))
            touched += 1
    assert touched, "no weight tensor to perturb"
    onnx.save(model, str(onnx_path))
    m["onnx"]["sha256"] = _sha(onnx_path)
    manifest_path.write_text(json.dumps(m, indent=2, sort_keys=True))
    if refresh_parity:
        ref_path = folder / "parity.npz"
        with np.load(ref_path) as z:
            ref = {k: z[k] for k in z.files}
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        feeds = {k[3:]: v for k, v in ref.items() if k.startswith("in:")}
        outs = [k[4:] for k in ref if k.startswith("out:")]
        ref.update({f"out:{n}": v for n, v in zip(outs, sess.run(outs, feeds), strict=True)})
        np.savez(ref_path, **ref)  # type: ignore[arg-type]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the breast-cancer id with only 1.0.0 (live) and 1.0.1, an exact copy of it, as candidate."""
    base = tmp_path / "models" / MODEL
    base.mkdir(parents=True)
    for name in ("change_control.json", "live.json", "locked_test.npz"):
        shutil.copy2(MODELS / MODEL / name, base / name)
    shutil.copytree(MODELS / MODEL / "1.0.0", base / "1.0.0")
    shutil.copytree(MODELS / MODEL / "1.0.0", base / "1.0.1")
    m = json.loads((base / "1.0.1" / "manifest.json").read_text())
    m["version"] = "1.0.1"
    (base / "1.0.1" / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    return tmp_path / "models"


def _live(root: Path) -> dict[str, Any]:
    return json.loads((root / MODEL / "live.json").read_text())


def test_a_better_candidate_passes_and_becomes_live(root: Path) -> None:
    # Given a live 1.0.0 whose weights were degraded and a candidate 1.0.1 that is the original model
    _perturb(root / MODEL / "1.0.0")
    before = _live(root)
    # When the gate runs
    out = promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT, now=lambda: "2026-11-30T12:00:00+00:00")
    # Then every check passes, the candidate is better, and live.json names it
    assert out.promoted, out.failed
    assert out.failed == []
    assert out.metrics["auc"]["paired_difference"]["value"] > 0.01
    live = _live(root)
    assert live["live"] == "1.0.1"
    assert live["retired"] == before["retired"] == []  # the previous live version stays a candidate
    assert live["history"] == [
        *before["history"],
        {"version": "1.0.1", "promoted_at": "2026-11-30T12:00:00+00:00", "report": "1.0.1/comparison.md"},
    ]
    # And the band the canary's alarms use is the new live version's, recorded with the promotion
    band = live["band"]
    assert band["version"] == "1.0.1" and band["metric"] == "PositiveShare"
    assert band["recorded_at"] == "2026-11-30T12:00:00+00:00"
    assert 0.0 <= band["low"] < band["center"] < band["high"] <= 1.0
    assert band == {**out.band}
    report = (root / MODEL / "1.0.1" / "comparison.md").read_text()
    assert "**PROMOTED**" in report
    assert f"[{band['low']:g}, {band['high']:g}]" in report and "Recorded in live.json" in report
    assert "| auc |" in report and "paired difference" in report
    assert (root / MODEL / "1.0.1" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # And gating it again is not possible (it is live), which leaves its promotion report as it was
    with pytest.raises(promote.GateError, match="is live"):
        promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT)
    assert (root / MODEL / "1.0.1" / "comparison.md").read_text() == report


def test_a_worse_candidate_is_refused_naming_the_criterion(root: Path) -> None:
    # Given a candidate whose weights were perturbed (its own parity record re-recorded, so only metrics differ)
    _perturb(root / MODEL / "1.0.1")
    live_bytes = (root / MODEL / "live.json").read_bytes()
    # When the gate runs through its command line
    code = promote.main(["--model", MODEL, "--version", "1.0.1", "--root", str(root), "--n-boot", str(N_BOOT)])
    # Then it is refused with a non-zero exit, live.json is untouched, and the report names the criterion
    assert code == 1
    assert (root / MODEL / "live.json").read_bytes() == live_bytes
    out = promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT)
    assert not out.promoted
    assert "auc_non_inferior" in out.failed
    assert {"integrity_live", "integrity_candidate", "parity", "contract"}.isdisjoint(out.failed)
    assert out.metrics["auc"]["paired_difference"]["ci95"][0] < -0.01
    # the live column reproduces the 1.0.0 manifest's test metrics (scikit-learn at export time)
    recorded = json.loads((root / MODEL / "1.0.0" / "manifest.json").read_text())["metrics"]
    for k in ("auc", "sensitivity", "specificity", "brier", "ece"):
        assert out.metrics[k]["live"]["value"] == pytest.approx(recorded[k]["value"], abs=1e-6), k
    report = (root / MODEL / "1.0.1" / "comparison.md").read_text()
    assert "**REFUSED**" in report and "auc_non_inferior" in report.split("Verdict:")[1].splitlines()[0]
    assert "Not recorded (the candidate was refused)" in report
    assert "| auc_non_inferior |" in report and "**FAIL**" in report


def test_a_candidate_whose_onnx_no_longer_matches_its_parity_record_is_refused(root: Path) -> None:
    _perturb(root / MODEL / "1.0.1", scale=0.01, refresh_parity=False)
    out = promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT)
    assert not out.promoted
    assert "parity" in out.failed


def test_a_candidate_with_another_contract_is_refused(root: Path) -> None:
    path = root / MODEL / "1.0.1" / "manifest.json"
    m = json.loads(path.read_text())
    m["inputs"][0]["max"] = m["inputs"][0]["max"] * 2  # the API would accept other values
    path.write_text(json.dumps(m))
    out = promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT)
    assert out.failed == ["contract"]
    assert _live(root)["live"] == "1.0.0"


def test_a_model_file_that_does_not_match_its_manifest_is_refused(root: Path) -> None:
    onnx_path = root / MODEL / "1.0.1" / "model.onnx"
    model = onnx.load(str(onnx_path))
    model.doc_string = "changed after export"
    onnx.save(model, str(onnx_path))
    assert "integrity_candidate" in promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT).failed


def test_a_tampered_locked_split_stops_the_gate_and_writes_nothing(root: Path) -> None:
    path = root / MODEL / "locked_test.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y"] = arrays["y"].copy()
    arrays["y"][0] = 1 - arrays["y"][0]
    np.savez(path, **arrays)  # type: ignore[arg-type]
    live_bytes = (root / MODEL / "live.json").read_bytes()
    with pytest.raises(promote.GateError, match="data_sha256"):
        promote.promote(MODEL, "1.0.1", root=root, n_boot=N_BOOT)
    assert promote.main(["--model", MODEL, "--version", "1.0.1", "--root", str(root)]) == 2
    assert not (root / MODEL / "1.0.1" / "comparison.md").exists()
    assert (root / MODEL / "live.json").read_bytes() == live_bytes


def test_unknown_version_cannot_be_gated(root: Path) -> None:
    with pytest.raises(promote.GateError, match="no such version"):
        promote.promote(MODEL, "9.9.9", root=root)


def test_auc_is_the_probability_a_positive_outranks_a_negative() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    p = np.round(rng.random(60), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    pairs = [(a > b) + 0.5 * (a == b) for a, b in product(pos, neg)]
    assert promote.auc(y, p) == pytest.approx(np.mean(pairs))
    assert np.isnan(promote.auc(np.ones(5), p[:5]))


def test_paired_bootstrap_of_identical_scores_has_a_zero_difference() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    fns = promote.metric_fns("classification", 0.5)
    res = promote.paired_bootstrap(y, p, p, fns, fns, n_boot=200, seed=1)
    for m in res.values():
        assert m["paired_difference"] == {"value": 0.0, "ci95": [0.0, 0.0]}
        assert m["live"] == m["candidate"]
        assert m["live"]["ci95"][0] < m["live"]["value"] < m["live"]["ci95"][1] or m["live"]["value"] in (0.0, 1.0)


@pytest.mark.parametrize("model_id", sorted(p.parent.name for p in MODELS.glob("*/change_control.json")))
def test_committed_plans_live_files_and_locked_splits_agree(model_id: str) -> None:
    base = MODELS / model_id
    plan = json.loads((base / "change_control.json").read_text())
    live = json.loads((base / "live.json").read_text())
    assert plan["model"] == model_id
    assert plan["criteria"] and plan["parity_required"] is True
    assert (base / live["live"] / "manifest.json").is_file()
    assert set(live) == {"live", "retired", "history", "band"}
    assert live["live"] not in live["retired"]
    # the live version's band is recorded, with the plan's declared metric and window
    assert live["band"]["version"] == live["live"]
    assert live["band"]["metric"] == plan["monitoring"]["metric"]
    assert live["band"]["window"] == plan["monitoring"]["window"]
    assert live["band"]["low"] < live["band"]["center"] < live["band"]["high"]
    assert all(set(h) == {"version", "promoted_at", "report"} for h in live["history"])
    assert live["history"][-1]["version"] == live["live"]
    if plan["locked_test"]["file"] or plan["locked_test"].get("derive_at_gate"):
        arrays = locked.load(base, plan)
        assert len(arrays["y"]) == plan["locked_test"]["n"]
    # a version that went through the gate carries its report
    for version in plan["declared_before_training"]:
        assert (base / version / "comparison.md").is_file(), version


def test_regression_plan_refuses_a_worse_regressor(tmp_path: Path) -> None:
    # Given diabetes-progression 1.0.0 live and a perturbed copy 1.0.1 as candidate
    base = tmp_path / "diabetes-progression"
    base.mkdir()
    src = MODELS / "diabetes-progression"
    for name in ("change_control.json", "live.json", "locked_test.npz"):
        shutil.copy2(src / name, base / name)
    shutil.copytree(src / "1.0.0", base / "1.0.0")
    shutil.copytree(src / "1.0.0", base / "1.0.1")
    m = json.loads((base / "1.0.1" / "manifest.json").read_text())
    m["version"] = "1.0.1"
    (base / "1.0.1" / "manifest.json").write_text(json.dumps(m))
    _perturb(base / "1.0.1")
    # When the gate runs, Then the error criterion fails, measured in the output's units
    out = promote.promote("diabetes-progression", "1.0.1", root=tmp_path, n_boot=N_BOOT)
    assert not out.promoted
    assert "mae_non_inferior" in out.failed
    assert set(out.metrics) == {"mae", "r2"}
    assert out.metrics["mae"]["live"]["value"] == pytest.approx(m["metrics"]["mae"]["value"], rel=1e-5)
    assert json.loads((base / "live.json").read_text())["live"] == "1.0.0"


# --- the prediction-distribution band ----------------------------------------------------------
def _band(kind: str, scores: np.ndarray, threshold: float | None = 0.5, window: int = 100) -> dict[str, Any]:
    return promote.monitoring_band(kind, scores, threshold, window=window, coverage=0.999, resamples=20000, seed=1)


def test_the_band_of_a_classifier_is_the_spread_of_its_positive_share_over_a_window() -> None:
    # Given outputs of which exactly half are at or above the threshold
    scores = np.repeat([0.2, 0.5], 500)
    band = _band("classification", scores)
    # Then the band is centred on 0.5, about +-3.29 binomial standard errors of a 100-prediction window wide
    assert band["metric"] == "PositiveShare" and band["center"] == 0.5
    assert band["low"] == pytest.approx(0.5 - 3.29 * 0.05, abs=0.03)
    assert band["high"] == pytest.approx(0.5 + 3.29 * 0.05, abs=0.03)
    # and a longer window narrows it, a shorter widens it
    wide, narrow = _band("classification", scores, window=25), _band("classification", scores, window=400)
    assert wide["low"] < band["low"] < narrow["low"] < 0.5 < narrow["high"] < band["high"] < wide["high"]
    # and the threshold is the version's own: everything positive at threshold 0.1
    everything = _band("classification", scores, threshold=0.1)
    assert (everything["low"], everything["high"]) == (1.0, 1.0)


def test_the_band_of_a_regression_is_in_the_outputs_units() -> None:
    scores = np.linspace(100.0, 200.0, 101)
    band = _band("regression", scores, threshold=None)
    assert band["metric"] == "MeanScore" and band["center"] == pytest.approx(150.0)
    sd = float(scores.std()) / 10.0  # standard error of a 100-prediction mean
    assert band["low"] == pytest.approx(150.0 - 3.29 * sd, rel=0.03)
    assert band["high"] == pytest.approx(150.0 + 3.29 * sd, rel=0.03)


def test_a_band_cannot_be_made_from_non_finite_outputs_or_without_a_threshold() -> None:
    with pytest.raises(promote.GateError):
        _band("classification", np.array([0.1, np.nan]))
    with pytest.raises(promote.GateError, match="threshold"):
        _band("classification", np.array([0.1, 0.9]), threshold=None)
    with pytest.raises(promote.GateError):
        _band("ranking", np.array([0.1, 0.9]))


def test_record_band_records_the_live_versions_band_and_changes_nothing_else(root: Path) -> None:
    before = _live(root)
    # When the band is recorded through the command line
    assert promote.main(["--model", MODEL, "--record-band", "--root", str(root)]) == 0
    # Then live.json gains the live version's band, equal to what the committed file holds, and nothing else
    after = _live(root)
    assert {k: v for k, v in after.items() if k != "band"} == {k: v for k, v in before.items() if k != "band"}
    assert after["band"]["version"] == "1.0.0"
    committed = json.loads((MODELS / MODEL / "live.json").read_text())["band"]
    drop = {"recorded_at"}
    assert {k: v for k, v in after["band"].items() if k not in drop} == {
        k: v for k, v in committed.items() if k not in drop
    }
    # And a plan whose declared metric contradicts the model's kind is refused
    plan_path = root / MODEL / "change_control.json"
    plan = json.loads(plan_path.read_text())
    plan["monitoring"]["metric"] = "MeanScore"
    plan_path.write_text(json.dumps(plan))
    assert promote.main(["--model", MODEL, "--record-band", "--root", str(root)]) == 2
