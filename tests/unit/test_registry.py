"""The registry refuses tampered models, serves the highest version, and loads sessions once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medserve.problems import Problem
from medserve.registry import ModelIntegrityError, Registry
from tests.conftest import MODELS, live_folder


def copy_model(tmp_path: Path, model_id: str = "breast-cancer", version: str | None = None) -> Path:
    src = live_folder(model_id)
    dst = tmp_path / model_id / (version or src.name)
    shutil.copytree(src, dst)
    if version:
        m = json.loads((dst / "manifest.json").read_text())
        m["version"] = version
        (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_a_tampered_onnx_file_is_refused_at_init(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    onnx = folder / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        Registry.load(tmp_path)


def test_missing_manifest_keys_are_refused(tmp_path: Path) -> None:
    folder = copy_model(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    del m["intended_use"]
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelIntegrityError, match="intended_use"):
        Registry.load(tmp_path)


def test_highest_version_is_served(tmp_path: Path) -> None:
    copy_model(tmp_path, version="1.2.0")
    copy_model(tmp_path, version="1.10.0")
    copy_model(tmp_path, version="1.9.3")
    reg = Registry.load(tmp_path, sessions=False)
    assert reg.get("breast-cancer").version == "1.10.0"


def test_sessions_only_for_the_functions_task(tmp_path: Path) -> None:
    copy_model(tmp_path, "breast-cancer")
    copy_model(tmp_path, "diabetes-progression")
    reg = Registry.load(tmp_path, task="imaging")
    assert all(e.session is None for e in reg.entries())
    reg = Registry.load(tmp_path, task="risk")
    assert all(e.session is not None for e in reg.entries())


def test_thread_count_is_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_model(tmp_path)
    monkeypatch.setenv("MEDSERVE_ORT_THREADS", "2")
    entry = Registry.load(tmp_path, task="risk").get("breast-cancer")
    assert entry.session is not None
    opts = entry.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 1


def test_wrong_task_or_unknown_id_is_404(tmp_path: Path) -> None:
    copy_model(tmp_path)
    reg = Registry.load(tmp_path, sessions=False)
    with pytest.raises(Problem) as err:
        reg.get("breast-cancer", task="imaging")
    assert err.value.status == 404
    with pytest.raises(Problem) as err:
        reg.get("nope", task="risk")
    assert err.value.status == 404


def test_every_shipped_model_verifies() -> None:
    reg = Registry.load(MODELS, sessions=False)
    assert {"breast-cancer", "diabetes-progression"} <= set(reg.ids())
