"""Every function with its three layers fits Lambda's 250 MiB unzipped limit.

Lambda counts the function's code plus all its layers, unzipped, against 262,144,000
bytes. Each function carries the same three layers, so the binding case is the
largest function folder. The runtime layer is measured as built by ``make layer``
(into ``.build/runtime/``, which ``make test`` builds first: the test fails, it does
not skip, when it is missing); the common and models layers are built here by their
own Makefile targets, exactly as ``sam build`` would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]
LAMBDA_UNZIPPED_LIMIT = 262_144_000
MIB = 1024 * 1024
LAYER_IMPORTS = ["onnxruntime", "numpy", "PIL", "pydicom", "aws_lambda_powertools", "highdicom"]


@pytest.fixture
def runtime_layer(repo_root: Path) -> Path:
    built = repo_root / ".build" / "runtime" / "python"
    assert built.is_dir(), "no runtime layer at .build/runtime/python: run `make layer` (`make test` does)"
    return built


def _build_layer(run_tool: Run, repo_root: Path, sam_template: dict[str, Any], name: str, out: Path) -> Path:
    source = repo_root / sam_template["Resources"][name]["Properties"]["ContentUri"]
    done = run_tool(["make", "-s", "-C", str(source), f"build-{name}", f"ARTIFACTS_DIR={out}"])
    assert done.returncode == 0, done.stderr
    return out


def test_largest_function_with_its_layers_fits_lambda(
    runtime_layer: Path,
    run_tool: Run,
    repo_root: Path,
    sam_template: dict[str, Any],
    measure: Callable[..., int],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    functions = {
        name: repo_root / resource["Properties"]["CodeUri"]
        for name, resource in sam_template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    missing = sorted(name for name, folder in functions.items() if not folder.is_dir())
    assert not missing, f"function folders missing: {missing}"

    sizes = {
        "RuntimeLayer": measure(runtime_layer),
        "CommonLayer": measure(_build_layer(run_tool, repo_root, sam_template, "CommonLayer", tmp_path / "common")),
        "ModelsLayer": measure(_build_layer(run_tool, repo_root, sam_template, "ModelsLayer", tmp_path / "models")),
    }
    largest, largest_size = max(
        ((name, measure(folder, byte_code=False)) for name, folder in functions.items()), key=lambda x: x[1]
    )
    sizes[f"largest function ({largest})"] = largest_size
    total = sum(sizes.values())

    for part, size in sizes.items():
        record_property(part, size)
    record_property("total_unzipped_bytes", total)
    with capsys.disabled():
        parts = ", ".join(f"{part} {size / MIB:.1f} MiB" for part, size in sizes.items())
        print(
            f"\n[layer size] {total:,} bytes = {total / MIB:.1f} MiB of {LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB"
            f" ({100 * total / LAMBDA_UNZIPPED_LIMIT:.0f}%): {parts}"
        )

    assert sizes["RuntimeLayer"] > 10 * MIB, "the runtime layer looks empty: rebuild it with `make layer`"
    assert total < LAMBDA_UNZIPPED_LIMIT


def test_built_runtime_layer_imports_alone(runtime_layer: Path, tool_env: dict[str, str], tmp_path: Path) -> None:
    # -I -S: no site-packages, no user paths; only the standard library and the layer, as in Lambda.
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(runtime_layer)!r})\n"
        f"import {', '.join(LAYER_IMPORTS)}\n"
        "import onnxruntime\n"
        "from aws_lambda_powertools.event_handler import APIGatewayRestResolver\n"
        "from aws_lambda_powertools.utilities.batch import BatchProcessor\n"
        "assert 'CPUExecutionProvider' in onnxruntime.get_available_providers()\n"
        f"mods = [sys.modules[m].__file__ for m in {LAYER_IMPORTS!r}]\n"
        f"assert all(f.startswith({str(runtime_layer)!r}) for f in mods), mods\n"
        "print('ok')\n"
    )

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code],
        cwd=tmp_path,
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "ok"
    assert not (runtime_layer / "boto3").exists(), "boto3 comes with the Lambda runtime"
