"""The ``medserve`` command end to end: its entry point as a subprocess against the real local runner.

One runner for the module (free API and S3 ports). The command runs as ``python -m
medserve_client`` from ``clients/python/src`` (the console script ``medserve`` calls the same
``main``), so the tests exercise this checkout's client whatever is installed.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from pydicom.data import get_testdata_file

from tests.conftest import load_event
from tests.e2e.conftest import REPO_ROOT, _free_port, _tail, local_runner

CLIENT_SRC = REPO_ROOT / "clients" / "python" / "src"
RISK_ROWS: list[dict[str, Any]] = json.loads(load_event("risk_breast_cancer")["body"])["instances"]
OBSERVATIONS: list[dict[str, Any]] = json.loads(load_event("vitals_predict")["body"])["observations"]
PNG = base64.b64decode(load_event("imaging_png")["body"])
DICOM = base64.b64decode(load_event("imaging_dicom")["body"])


@dataclass(frozen=True)
class Runner:
    api: str
    s3: str


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    api, s3 = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    env = {"PORT": api.rsplit(":", 1)[1], "S3_PORT": s3.rsplit(":", 1)[1], "MEDSERVE_LOCAL_EXTRAS": "local.s3"}

    def ready(log_path: Path) -> bool:
        try:
            requests.get(f"{api}/v1/health", timeout=5)
        except requests.ConnectionError:
            return False
        return "Ctrl-C to stop" in _tail(log_path, 100_000)

    with local_runner(tmp_path_factory.mktemp("cli-runner"), env, ready, "API and S3 endpoint"):
        yield Runner(api, s3)


def medserve(*args: str | Path, endpoint: str | None = None, cwd: Path | None = None) -> Result:
    """Run the command; ``endpoint`` goes in through ``MEDSERVE_ENDPOINT``, as a user would set it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CLIENT_SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("MEDSERVE_ENDPOINT", None)
    if endpoint:
        env["MEDSERVE_ENDPOINT"] = endpoint
    proc = subprocess.run(
        [sys.executable, "-m", "medserve_client", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write_csv(path: Path, rows: list[dict[str, Any]], ids: list[str] | None = None) -> Path:
    with path.open("w", newline="") as f:
        names = (["id"] if ids else []) + list(rows[0])
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({**({"id": ids[i]} if ids else {}), **row})
    return path


def test_the_console_script_is_declared() -> None:
    project = tomllib.loads((REPO_ROOT / "clients/python/pyproject.toml").read_text())
    assert project["project"]["scripts"]["medserve"] == "medserve_client.cli:main"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install" in makefile and "-e clients/python" in makefile


def test_models_lists_every_served_model(runner: Runner) -> None:
    served = requests.get(f"{runner.api}/v1/models", timeout=30).json()["models"]
    table = medserve("models", endpoint=runner.api)
    assert table.code == 0, table.err
    assert table.out.splitlines()[0].split()[:4] == ["id", "version", "task", "data"]
    for model in served:
        line = next(ln for ln in table.out.splitlines() if ln.startswith(model["id"] + " "))
        assert line.split()[1:3] == [model["version"], model["task"]]
    raw = medserve("models", "--json", "--endpoint", runner.api)
    assert raw.code == 0 and json.loads(raw.out)["models"] == served


def test_models_show_renders_the_card(runner: Runner) -> None:
    shown = medserve("models", "show", "breast-cancer", endpoint=runner.api)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].startswith("breast-cancer ") and "(risk)" in lines[0]
    k = lines.index("Intended use")
    assert set(lines[k + 1]) == {"-"}  # headings underlined, not '## ...'
    assert not any(ln.startswith("#") or ln.startswith("|") for ln in lines)
    assert "**" not in shown.out
    row = next(ln for ln in lines if ln.split()[:2] == ["0", "mean_radius"])  # the inputs table, aligned
    assert row.startswith("  ")


def test_predict_risk_csv_table_and_json(runner: Runner, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "rows.csv", RISK_ROWS, ids=["case-a", "case-b"])
    expected = requests.post(
        f"{runner.api}/v1/risk/breast-cancer/predict", json={"instances": RISK_ROWS, "explain": True}, timeout=30
    ).json()["predictions"]
    shown = medserve("predict", "breast-cancer", rows, "--explain", "--top", "2", endpoint=runner.api)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].startswith("model") and "breast-cancer" in lines[0]
    for row_id, pred in zip(["case-a", "case-b"], expected, strict=True):
        line = next(ln for ln in lines if ln.startswith(row_id + " "))
        cells = line.split()
        assert cells[1] == pred["label"] and float(cells[2]) == pytest.approx(pred["probability"], abs=5e-4)
        top = max(pred["contributions"], key=lambda name: abs(pred["contributions"][name]))
        assert top in line
    raw = medserve("predict", "breast-cancer", rows, "--json", endpoint=runner.api)
    answer = json.loads(raw.out)
    assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected]
    assert "contributions" not in answer["predictions"][0]


def test_predict_risk_json_rows_and_version_pin(runner: Runner, tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(RISK_ROWS))
    version = requests.get(f"{runner.api}/v1/models/breast-cancer", timeout=30).json()["version"]
    raw = medserve("predict", "breast-cancer", path, "--json", "--version", version, endpoint=runner.api)
    assert raw.code == 0, raw.err
    answer = json.loads(raw.out)
    assert answer["model"]["version"] == version and len(answer["predictions"]) == len(RISK_ROWS)


def test_predict_vitals_csv(runner: Runner, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "obs.csv", OBSERVATIONS)
    expected = requests.post(
        f"{runner.api}/v1/vitals/vitals-deterioration/predict", json={"observations": OBSERVATIONS}, timeout=30
    ).json()
    shown = medserve("predict", "vitals-deterioration", path, "--explain", endpoint=runner.api)
    assert shown.code == 0, shown.err
    news2 = next(ln for ln in shown.out.splitlines() if ln.startswith("NEWS2"))
    assert news2.split()[1:3] == [expected["news2"]["risk"], str(expected["news2"]["score"])]
    model = next(ln for ln in shown.out.splitlines() if ln.startswith("prediction "))
    assert model.split()[1] == expected["prediction"]["label"]
    assert "contributions (time windows)" in shown.out
    assert "SYNTHETIC" in shown.out  # the model's own warning is shown


def test_predict_png_with_heatmap_overlay(runner: Runner, tmp_path: Path) -> None:
    image = tmp_path / "cxr.png"
    image.write_bytes(PNG)
    out = tmp_path / "cam" / "overlay.png"
    shown = medserve("predict", "chest-xray", image, "--heatmap", out, endpoint=runner.api)
    assert shown.code == 0, shown.err
    assert str(out) in shown.err
    assert any(ln.startswith("label ") for ln in shown.out.splitlines())
    with Image.open(out) as overlay:
        assert overlay.format == "PNG" and overlay.mode == "RGB"
        rgb = np.asarray(overlay, dtype=np.int16)
    base = np.asarray(Image.open(BytesIO(PNG)).convert("L").resize(overlay.size), dtype=np.int16)
    assert (rgb[..., 0] > rgb[..., 1] + 20).any()  # the CAM is drawn in red somewhere
    untouched = (rgb[..., 0] == base) & (rgb[..., 1] == base) & (rgb[..., 2] == base)
    assert untouched.any()  # and the image shows through where the CAM is zero


def test_predict_dicom_fhir_bundle_and_heatmap(runner: Runner, tmp_path: Path) -> None:
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(DICOM)
    drawn = medserve("predict", "chest-xray", scan, "--heatmap", tmp_path / "cam.png", endpoint=runner.api)
    assert drawn.code == 0, drawn.err
    with Image.open(tmp_path / "cam.png") as overlay:
        assert overlay.format == "PNG" and overlay.mode == "RGB"
    shown = medserve("predict", "chest-xray", scan, "--fhir", endpoint=runner.api)
    assert shown.code == 0, shown.err
    bundle = json.loads(shown.out)
    assert bundle["resourceType"] == "Bundle"
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"DiagnosticReport", "Device"} <= kinds


def test_dicom_of_a_refused_modality_shows_the_problem(runner: Runner) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    shown = medserve("predict", "chest-xray", ct, endpoint=runner.api)
    assert shown.code == 1 and shown.out == ""
    assert shown.err.startswith("error: Unprocessable Content")
    assert "dicom.Modality" in shown.err and "(status 422" in shown.err


def test_invalid_rows_show_field_errors(runner: Runner, tmp_path: Path) -> None:
    bad = [{**RISK_ROWS[0], "mean_radius": -5}]
    shown = medserve("predict", "breast-cancer", write_csv(tmp_path / "bad.csv", bad), endpoint=runner.api)
    assert shown.code == 1
    assert "- instances[0].mean_radius:" in shown.err


def test_unknown_model_is_a_clear_error(runner: Runner, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "rows.csv", RISK_ROWS)
    for args in (("predict", "no-such-model", rows), ("models", "show", "no-such-model")):
        shown = medserve(*args, endpoint=runner.api)
        assert shown.code == 1 and shown.out == ""
        assert shown.err.startswith("error: Not Found") and "no model 'no-such-model'" in shown.err
        assert "Traceback" not in shown.err


def test_endpoint_down_is_a_clear_error() -> None:
    shown = medserve("models", endpoint=f"http://127.0.0.1:{_free_port()}")
    assert shown.code == 1
    assert "cannot reach" in shown.err and "make run" in shown.err and "Traceback" not in shown.err


def test_file_too_large_points_to_batch(runner: Runner, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(PNG[:64] + bytes(5_000_000))
    shown = medserve("predict", "chest-xray", big, endpoint=runner.api)
    assert shown.code == 1
    assert "6,291,456" in shown.err and "medserve batch" in shown.err


def test_batch_uploads_shows_progress_and_downloads(runner: Runner, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_csv(folder / "ward a.csv", RISK_ROWS, ids=["a1", "a2"])
    (folder / "notes.txt").write_text("not a table\n")
    out = tmp_path / "out"
    args = ("batch", "breast-cancer", folder, "--out", out, "--s3-endpoint", runner.s3, "--poll", "0.3", "--wait", "90")
    shown = medserve(*args, endpoint=runner.api)
    assert shown.code == 1, shown.err  # one file got an error document
    progress = [ln for ln in shown.err.splitlines() if "[" in ln and "]" in ln]
    assert any(ln.startswith("uploading") and ln.endswith("2/2") for ln in progress)
    assert any(ln.startswith("outcomes") and "2/2 ok 1 errors 1" in ln for ln in progress)
    assert "2 uploaded, 1 result(s) (2 row(s) ok, 0 failed), 1 error(s), 0 pending" in shown.out
    result = json.loads((out / "results" / "ward a.csv.json").read_text())
    assert [r["id"] for r in result["results"]] == ["a1", "a2"]
    error = json.loads((out / "errors" / "notes.txt.json").read_text())
    assert error["status"] == 422 and error["source"]["key"].endswith("notes.txt")
    # The same name again: the earlier outcome is not taken for the new upload's.
    write_csv(folder / "ward a.csv", RISK_ROWS[:1], ids=["only"])
    (folder / "notes.txt").unlink()
    again = medserve(*args, endpoint=runner.api)
    assert again.code == 0, again.err
    assert [r["id"] for r in json.loads((out / "results" / "ward a.csv.json").read_text())["results"]] == ["only"]


def test_batch_of_a_missing_path_is_a_clear_error(runner: Runner, tmp_path: Path) -> None:
    shown = medserve("batch", "breast-cancer", tmp_path / "nothing-here", "--s3-endpoint", runner.s3)
    assert shown.code == 1 and "no such file or folder" in shown.err
