"""The layers ship python3.12 byte code that Lambda uses: no cold start compiles from source.

Lambda cannot write byte code into ``/opt``; a layer without ``__pycache__`` compiles
numpy, onnxruntime, Powertools and medserve at every cold start. Each handler
is imported here from the built layers laid out as Lambda lays them out (``/opt/python``
= runtime + common, ``/opt/models``), byte-code writing off, and its SnapStart warm-up
runs (every golden request, so what a first request imports lazily is imported too),
while a spy on the import system's compile step records every module compiled from
source. None may come from the layers.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from local.layers import RUNTIME_LAYER, lambda_opt

HANDLERS = ("models", "risk", "imaging", "vitals", "batch")

SPY = r"""
import importlib._bootstrap_external as be, importlib.util, json, os, sys
OPT = sys.argv[1]
compiled = []
_source_to_code = be.SourceLoader.source_to_code
def source_to_code(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return _source_to_code(self, data, path, *args, **kwargs)
be.SourceLoader.source_to_code = source_to_code
sys.dont_write_bytecode = True
# Lambda's order: /opt/python, then the runtime's own packages (/var/runtime: boto3 and its deps).
sys.path[:0] = [os.path.join(OPT, "python")]
sys.path.append(sys.argv[2])
for task in sys.argv[3:]:
    spec = importlib.util.spec_from_file_location(f"fn_{task}", os.path.join("functions", task, "app.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.SNAPSTART.before_snapshot()
    module.SNAPSTART.after_restore()
layer_modules = sorted(
    name for name, m in list(sys.modules.items())
    if (getattr(m, "__file__", None) or "").startswith(OPT) and str(m.__file__).endswith(".py")
)
print(json.dumps({
    "from_source": sorted(p for p in compiled if p.startswith(OPT)),
    "layer_modules": layer_modules,
    "files": {n: sys.modules[n].__file__ for n in ("numpy", "onnxruntime", "medserve", "aws_lambda_powertools")},
}))
"""


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert RUNTIME_LAYER.is_dir(), "no runtime layer at .build/runtime/python: run `make layer` (`make test` does)"
    return lambda_opt(tmp_path_factory.mktemp("lambda"))


def test_built_layers_hold_unchecked_hash_byte_code(opt: Path) -> None:
    for module in ("medserve/api.py", "medserve/snapstart.py", "numpy/__init__.py"):
        source = opt / "python" / module
        cached = Path(importlib.util.cache_from_source(str(source)))
        data = cached.read_bytes()
        assert data[:4] == importlib.util.MAGIC_NUMBER, module
        flags = int.from_bytes(data[4:8], "little")
        assert flags == 0b01, f"{module}: not an unchecked-hash pyc (flags {flags:#b})"


def test_every_handler_imports_from_the_layers_without_compiling(opt: Path, tmp_path: Path, repo_root: Path) -> None:
    env = {
        "MEDSERVE_MODELS_DIR": str(opt / "models"),
        "MEDSERVE_OUTPUT_BUCKET": "results",
        "POWERTOOLS_SERVICE_NAME": "bytecode-test",
        "POWERTOOLS_METRICS_NAMESPACE": "MedServe",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", SPY, str(opt), str(opt.parent / "var-runtime"), *HANDLERS],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(f.startswith(str(opt)) for f in report["files"].values()), report["files"]
    assert len(report["layer_modules"]) > 200, "the handlers should load hundreds of modules from the layers"
    assert "pydicom" in {m.split(".")[0] for m in report["layer_modules"]}, "the DICOM golden request ran"
    assert report["from_source"] == []


def test_a_layer_without_byte_code_is_caught(tmp_path: Path, repo_root: Path) -> None:
    # The spy must see a compile when there is no .pyc (else the test above proves nothing).
    pkg = tmp_path / "opt" / "python" / "plain"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n", encoding="utf-8")
    code = (
        SPY.split("for task in")[0]
        + "import plain\nprint(json.dumps(sorted(p for p in compiled if p.startswith(OPT))))\n"
    )

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, str(tmp_path / "opt"), str(tmp_path)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [str(pkg / "__init__.py")]
