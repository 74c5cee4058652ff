"""The SAM CLI (``.venv-tools/bin/sam``) validates and builds the template offline, without Docker.

``sam validate --lint`` needs a region but no credentials and no network: with the
fake credentials and region of conftest.py it runs entirely locally (checked by hand
inside a network namespace with no interfaces; the managed-policy lookup that could
call IAM never happens because the template names managed policies by ARN).

``sam build`` runs the layers' Makefiles (BuildMethod: makefile) and copies the
function folders (no requirements.txt, so nothing is installed for them). The
runtime layer's Makefile asks pip for manylinux wheels, so this test needs the
package index that ``make setup`` uses; it never needs Docker or AWS.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

Run = Callable[..., subprocess.CompletedProcess[str]]
FUNCTION_DIRS = {
    "ModelsFunction": "models",
    "RiskFunction": "risk",
    "ImagingFunction": "imaging",
    "VitalsFunction": "vitals",
    "BatchFunction": "batch",
    "InferenceFunction": "inference",
    "PreTrafficHook": "deploy_hooks",
    "PostTrafficHook": "deploy_hooks",
}


@pytest.fixture
def sam(repo_root: Path) -> str:
    binary = repo_root / ".venv-tools" / "bin" / "sam"
    assert binary.exists(), "the SAM CLI lives in .venv-tools: run `make setup-tools`"
    return str(binary)


def test_sam_validate_lint_offline(sam: str, run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    done = run_tool([sam, "validate", "--lint", "--template-file", str(repo_root / "template.yaml")], cwd=tmp_path)

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "is a valid SAM Template" in done.stdout


def test_sam_validate_rejects_an_invalid_template(sam: str, run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    # The check above can fail: an event of a type SAM does not know is refused.
    text = (repo_root / "template.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace("          Type: Api\n", "          Type: Apix\n", 1), encoding="utf-8")

    done = run_tool([sam, "validate", "--lint", "--template-file", str(broken)], cwd=tmp_path)

    assert done.returncode != 0
    assert "Apix" in done.stdout + done.stderr


def test_sam_build_without_docker(sam: str, run_tool: Run, repo_root: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"

    done = run_tool(
        [
            sam,
            "build",
            "--template-file",
            str(repo_root / "template.yaml"),
            "--build-dir",
            str(build),
            "--no-cached",
            "--no-use-container",
        ],
        cwd=tmp_path,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    runtime = build / "RuntimeLayer" / "python"
    assert (runtime / "onnxruntime" / "__init__.py").is_file()
    assert (runtime / "numpy").is_dir()
    assert not (runtime / "boto3").exists(), "boto3 comes with the Lambda runtime"
    # `sam build` runs the layer Makefiles: python3.12 byte code (unchecked-hash) ships beside the sources.
    common = build / "CommonLayer" / "python"
    assert (common / "medserve" / "__init__.py").is_file()
    for source in (runtime / "numpy" / "__init__.py", common / "medserve" / "api.py"):
        pyc = Path(importlib.util.cache_from_source(str(source))).read_bytes()
        assert pyc[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(pyc[4:8], "little") == 0b01, source
    models = build / "ModelsLayer" / "models"
    assert models.is_dir()
    assert list(models.glob("*/*/manifest.json")), "the models layer ships every <id>/<version>/ folder"
    assert not list(models.rglob("*.npz")), "parity references stay out of the layer"
    assert list(models.glob("*/*/golden.json")), "golden requests ship for the SnapStart warm-up"
    for name, folder in FUNCTION_DIRS.items():
        assert (build / name / "app.py").is_file(), folder
    built = yaml.safe_load((build / "template.yaml").read_text(encoding="utf-8"))
    assert built["Resources"]["RuntimeLayer"]["Properties"]["ContentUri"] == "RuntimeLayer"


def test_samconfig_deploys_stack_medserve_without_account_details(repo_root: Path) -> None:
    text = (repo_root / "samconfig.toml").read_text(encoding="utf-8")
    config = tomllib.loads(text)
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    deploy = config["default"]["deploy"]["parameters"]

    assert config["default"]["global"]["parameters"]["stack_name"] == "medserve"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert config["default"]["build"]["parameters"]["use_container"] is False
    assert not re.search(r"\b\d{12}\b", settings), "no account ids"
    assert not re.search(r"(?i)(secret|access_key|session_token|profile|region)", settings), "no credentials"
