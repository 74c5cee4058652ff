"""The layers' Makefiles build what Lambda needs and nothing else.

Each Makefile is run on a scratch copy (or as a dry run for the runtime layer, whose
real build is covered by test_layer_size.py and the ``sam build`` test).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Run = Callable[..., subprocess.CompletedProcess[str]]


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_runtime_layer_asks_pip_for_lambda_wheels_only(run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    done = run_tool(
        ["make", "-n", "-C", "layers/runtime", "build-RuntimeLayer", f"ARTIFACTS_DIR={tmp_path}", "PIP=/opt/x/pip"]
    )

    assert done.returncode == 0, done.stderr
    install = " ".join(line for line in done.stdout.splitlines() if " install " in line or "--" in line)
    assert "/opt/x/pip install" in install
    for flag in (
        "--platform manylinux_2_28_x86_64",
        "--platform manylinux2014_x86_64",
        "--python-version 3.12",
        "--implementation cp",
        "--only-binary=:all:",
        "--no-compile",
        f'--target "{tmp_path}/python"',
        f'--requirement "{repo_root}/layers/runtime/requirements.txt"',
    ):
        assert flag in install, flag


def test_runtime_layer_pip_defaults_to_pip3(run_tool: Run, tmp_path: Path) -> None:
    done = run_tool(
        ["env", "-u", "PIP", "make", "-n", "-C", "layers/runtime", "build-RuntimeLayer", f"ARTIFACTS_DIR={tmp_path}"]
    )

    assert done.returncode == 0, done.stderr
    assert "pip3 install" in done.stdout


def test_runtime_requirements_leave_boto3_to_the_lambda_runtime(repo_root: Path) -> None:
    lines = (repo_root / "layers/runtime/requirements.txt").read_text(encoding="utf-8").splitlines()
    names = {line.split("==")[0].strip().lower() for line in lines if line.strip() and not line.startswith("#")}

    assert {"onnxruntime", "numpy", "pillow", "pydicom", "aws-lambda-powertools"} <= names
    assert not names & {"boto3", "botocore", "tensorflow", "tensorflow-cpu"}


def test_models_layer_ships_model_folders_without_parity_data(run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    # Given a models folder with two models, a stray folder without a manifest, and test-only files,
    src = tmp_path / "models-src"
    for model in ("a/1.0.0", "b/2.1.0"):
        (src / model).mkdir(parents=True)
        for name in ("model.onnx", "manifest.json", "card.md", "roc.png", "golden.json", "parity.npz", ".DS_Store"):
            (src / model / name).write_bytes(b"x")
    (src / "notes").mkdir()
    (src / "notes" / "readme.md").write_text("not a model", encoding="utf-8")
    shutil.copy(repo_root / "layers/models/Makefile", src / "Makefile")
    out = tmp_path / "out"

    # when the layer target runs,
    done = run_tool(["make", "-C", str(src), "build-ModelsLayer", f"ARTIFACTS_DIR={out}"])

    # then every <id>/<version>/ lands under models/ with its golden requests, without the parity references.
    assert done.returncode == 0, done.stderr
    assert _files(out) == {
        f"models/{model}/{name}"
        for model in ("a/1.0.0", "b/2.1.0")
        for name in ("model.onnx", "manifest.json", "card.md", "roc.png", "golden.json")
    }


def test_common_layer_ships_fresh_byte_code_not_dev_caches(run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    # Given a package with a stale development cache (not a valid .pyc) and a stray legacy .pyc,
    src = tmp_path / "common-src"
    (src / "medserve" / "sub" / "__pycache__").mkdir(parents=True)
    (src / "medserve" / "__init__.py").write_text("", encoding="utf-8")
    (src / "medserve" / "sub" / "mod.py").write_text("X = 1\n", encoding="utf-8")
    (src / "medserve" / "sub" / "__pycache__" / "mod.cpython-312.pyc").write_bytes(b"\0")
    (src / "medserve" / "sub" / "__pycache__" / "gone.cpython-312.pyc").write_bytes(b"\0")
    (src / "medserve" / "sub" / "old.pyc").write_bytes(b"\0")
    shutil.copy(repo_root / "layers/common/Makefile", src / "Makefile")
    out = tmp_path / "out"

    # when the layer target runs,
    done = run_tool(["make", "-C", str(src), "build-CommonLayer", f"ARTIFACTS_DIR={out}", f"PYTHON={sys.executable}"])

    # then the sources ship with freshly compiled unchecked-hash byte code, and no stale cache.
    assert done.returncode == 0, done.stderr
    tag = sys.implementation.cache_tag
    assert _files(out) == {
        "python/medserve/__init__.py",
        "python/medserve/sub/mod.py",
        f"python/medserve/__pycache__/__init__.{tag}.pyc",
        f"python/medserve/sub/__pycache__/mod.{tag}.pyc",
    }
    pyc = (out / f"python/medserve/sub/__pycache__/mod.{tag}.pyc").read_bytes()
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, unchecked


def test_layers_find_a_python312_to_compile_with(run_tool: Run, tmp_path: Path) -> None:
    # As under `sam build`: no PYTHON given, the Makefile finds a python3.12 itself.
    for layer, target in (("runtime", "build-RuntimeLayer"), ("common", "build-CommonLayer")):
        done = run_tool(
            ["env", "-u", "PYTHON", "make", "-n", "-C", f"layers/{layer}", target, f"ARTIFACTS_DIR={tmp_path}"]
        )

        assert done.returncode == 0, done.stderr
        compile_line = next(line for line in done.stdout.splitlines() if "compileall" in line)
        assert "--invalidation-mode unchecked-hash" in compile_line
        interpreter = compile_line.split()[0].strip('"')
        version = subprocess.run(
            [interpreter, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True
        )
        assert version.stdout.strip() == "(3, 12)", layer


def test_common_layer_refuses_to_build_without_the_package(run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    shutil.copy(repo_root / "layers/common/Makefile", src / "Makefile")

    done = run_tool(["make", "-C", str(src), "build-CommonLayer", f"ARTIFACTS_DIR={tmp_path / 'out'}"])

    assert done.returncode != 0
