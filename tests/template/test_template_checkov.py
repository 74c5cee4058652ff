"""checkov passes on ``template.yaml``; every check it skips is skipped on purpose.

Skips live next to the resource they concern, as ``Metadata: checkov: skip:`` entries
with a ``comment`` giving the reason (no repo-wide skip list). The last test proves
no skip is stale: without the skips, exactly the skipped checks fail.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


def _checkov(repo_root: Path) -> list[str]:
    binary = repo_root / ".venv-tools" / "bin" / "checkov"
    assert binary.exists(), "checkov lives in .venv-tools: run `make setup-tools`"
    return [str(binary), "--framework", "cloudformation", "--skip-download"]


def _findings(run_tool: Run, args: list[str], cwd: Path) -> dict[str, Any]:
    done = run_tool([*args, "--output", "json"], cwd=cwd)
    assert done.returncode in {0, 1}, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["summary"]["parsing_errors"] == 0
    return report


def test_checkov_passes(run_tool: Run, repo_root: Path) -> None:
    done = run_tool([*_checkov(repo_root), "-f", "template.yaml", "--compact", "--quiet"])

    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout


@pytest.fixture
def skipped(run_tool: Run, repo_root: Path) -> list[dict[str, Any]]:
    report = _findings(run_tool, [*_checkov(repo_root), "-f", "template.yaml"], repo_root)
    assert report["results"]["failed_checks"] == []
    return report["results"]["skipped_checks"]


def test_every_skip_gives_a_reason(skipped: list[dict[str, Any]]) -> None:
    assert skipped, "the template documents its skips; none were seen"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']} needs a reason"


def test_no_skip_is_stale(
    skipped: list[dict[str, Any]], sam_template: dict[str, Any], run_tool: Run, repo_root: Path, tmp_path: Path
) -> None:
    # Given the same template with every checkov skip removed,
    template = copy.deepcopy(sam_template)
    for resource in template["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    bare = tmp_path / "template.json"
    bare.write_text(json.dumps(template), encoding="utf-8")

    # when checkov scans it,
    report = _findings(run_tool, [*_checkov(repo_root), "-f", str(bare)], tmp_path)

    # then exactly the skipped checks fail.
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert failed == {(c["check_id"], c["resource"]) for c in skipped}
