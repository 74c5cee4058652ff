"""Fixtures for the template tests: the SAM template, its offline transform, and tool runs.

Nothing here talks to AWS. Every test gets fake credentials and a region (the SAM
translator and SAM CLI want a region; nothing needs real credentials), and the
command-line tools run with a throw-away ``HOME`` so they write no user state.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
TOOLS_BIN = REPO_ROOT / ".venv-tools" / "bin"
REGION = "eu-west-1"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAM_CLI_TELEMETRY": "0",
}


class NoManagedPolicies:
    """Managed-policy loader for the SAM translator that never calls IAM.

    The template names managed policies by ARN only, so an empty map is enough.
    """

    def load(self) -> dict[str, str]:
        """Return no policy-name-to-ARN mappings."""
        return {}


def _packaged(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` with local code folders turned into S3 URIs, as ``sam package`` does."""
    packaged = copy.deepcopy(template)
    for resource in packaged["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://medserve-artifacts/{props[key].strip('/')}"
    return packaged


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region; no profile or config file can leak in."""
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where template.yaml lives)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    """``template.yaml`` as the SAM translator reads it (short-form intrinsics expanded)."""
    return yaml_parse(TEMPLATE_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def transformed(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The plain CloudFormation template the SAM transform makes of ``template.yaml``."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_AWS_ENV.items():
            mp.setenv(key, value)
        return transform(_packaged(sam_template), {}, NoManagedPolicies())  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def resources(transformed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The transformed template's ``Resources``."""
    return transformed["Resources"]


@pytest.fixture
def of_type(resources: dict[str, dict[str, Any]]) -> Callable[[str], dict[str, dict[str, Any]]]:
    """``of_type("AWS::SQS::Queue")`` -> {logical id: resource} of that type."""

    def pick(resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in resources.items() if v["Type"] == resource_type}

    return pick


@pytest.fixture
def tool_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a tool subprocess: fake AWS, private HOME, this venv's python/pip first on PATH."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(FAKE_AWS_ENV)
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture
def run_tool(tool_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a command offline-safe (fake AWS env), capturing text output; never raises on failure."""

    def run(args: list[str], cwd: Path = REPO_ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, env=tool_env, capture_output=True, text=True, timeout=timeout, check=False)

    return run


def tree_size(root: Path, *, byte_code: bool = True) -> int:
    """Bytes of every regular file under ``root`` (what it weighs unzipped).

    ``byte_code=False`` leaves ``__pycache__`` out: ``sam build`` drops them from function
    folders (its python_pip workflow excludes them), while a layer built by its Makefile
    ships the byte code it compiled.
    """
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if not byte_code:
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


@pytest.fixture
def measure() -> Callable[..., int]:
    """The :func:`tree_size` helper, as a fixture."""
    return tree_size
