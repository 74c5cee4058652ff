"""checkov passes on ``template.yaml`` AND on its SAM transform; every skipped check is skipped on purpose.

Skips live next to the resource they concern, as ``Metadata: checkov: skip:`` entries
with a ``comment`` giving the reason (no repo-wide skip list). SAM copies a function's
Metadata to the Lambda function it generates; an API's skips are carried here to the
stage SAM generates for it (checkov then judges the deployed resource, not SAM's
shorthand). The stale-skip tests prove every skip is needed: without the skips, exactly
the skipped checks fail.
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

# Issue 9: these skips rested on claims that were not true; the controls now exist instead.
NEVER_SKIPPED = {
    "CKV_AWS_158",  # log groups: KMS-encrypted with the stack key
    "CKV_AWS_27",  # queues: the stack key, not SSE-SQS
    "CKV_AWS_173",  # function environments: the stack key
    "CKV_AWS_115",  # serving functions: reserved concurrency is a parameter
}


def _checkov(repo_root: Path) -> list[str]:
    binary = repo_root / ".venv-tools" / "bin" / "checkov"
    assert binary.exists(), "checkov lives in .venv-tools: run `make setup-tools`"
    return [str(binary), "--framework", "cloudformation", "--skip-download"]


_REPORTS: dict[str, dict[str, Any]] = {}


def _findings(run_tool: Run, args: list[str], cwd: Path) -> dict[str, Any]:
    done = run_tool([*args, "--output", "json"], cwd=cwd)
    assert done.returncode in {0, 1}, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["summary"]["parsing_errors"] == 0
    return report


@pytest.fixture(scope="session")
def transformed_file(
    transformed: dict[str, Any], sam_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    template = copy.deepcopy(transformed)
    for name, resource in sam_template["Resources"].items():
        skips = resource.get("Metadata", {}).get("checkov")
        if resource["Type"] == "AWS::Serverless::Api" and skips:
            for generated, target in template["Resources"].items():
                if target["Type"] == "AWS::ApiGateway::Stage" and generated.startswith(name):
                    target.setdefault("Metadata", {})["checkov"] = copy.deepcopy(skips)
    path = tmp_path_factory.mktemp("transformed") / "transformed.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return path


@pytest.fixture(params=["template.yaml", "transformed"])
def scanned(request: pytest.FixtureRequest, repo_root: Path) -> Path:
    if request.param == "template.yaml":
        return repo_root / "template.yaml"
    return request.getfixturevalue("transformed_file")


def test_checkov_passes(run_tool: Run, repo_root: Path, scanned: Path) -> None:
    done = run_tool([*_checkov(repo_root), "-f", str(scanned), "--compact", "--quiet"])

    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout


@pytest.fixture
def skipped(run_tool: Run, repo_root: Path, scanned: Path) -> list[dict[str, Any]]:
    # One scan per template for the tests below (checkov takes a while on two busy cores).
    if str(scanned) not in _REPORTS:
        _REPORTS[str(scanned)] = _findings(run_tool, [*_checkov(repo_root), "-f", str(scanned)], scanned.parent)
    report = _REPORTS[str(scanned)]
    assert report["results"]["failed_checks"] == []
    assert report["summary"]["passed"] > 100, "checkov judged the template's resources"
    return report["results"]["skipped_checks"]


def test_every_skip_gives_a_reason_and_none_is_a_retired_excuse(skipped: list[dict[str, Any]]) -> None:
    assert skipped, "the template documents its skips; none were seen"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']} needs a reason"
        assert check["check_id"] not in NEVER_SKIPPED or "Hook" in check["resource"], check["resource"]


def test_the_access_logging_skip_rests_on_a_trail_that_exists(
    skipped: list[dict[str, Any]], resources: dict[str, dict[str, Any]]
) -> None:
    logging_skips = [c for c in skipped if c["check_id"] == "CKV_AWS_18"]
    trail = [r for r in resources.values() if r["Type"] == "AWS::CloudTrail::Trail"]
    audited = json.dumps([r["Properties"]["EventSelectors"] for r in trail])

    assert trail
    for check in logging_skips:
        bucket = check["resource"].split(".")[-1]
        if (
            "CloudTrail" in check["check_result"]["suppress_comment"]
            and "data events" in (check["check_result"]["suppress_comment"])
        ):
            assert f"${{{bucket}.Arn}}/" in audited, bucket


def test_no_skip_is_stale(
    skipped: list[dict[str, Any]], run_tool: Run, repo_root: Path, scanned: Path, tmp_path: Path
) -> None:
    # Given the same template with every checkov skip removed,
    if scanned.suffix == ".json":
        template = json.loads(scanned.read_text(encoding="utf-8"))
    else:
        from samtranslator.yaml_helper import yaml_parse

        template = yaml_parse(scanned.read_text(encoding="utf-8"))
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    bare = tmp_path / "template.json"
    bare.write_text(json.dumps(template), encoding="utf-8")

    # when checkov scans it,
    report = _findings(run_tool, [*_checkov(repo_root), "-f", str(bare)], tmp_path)

    # then exactly the skipped checks fail.
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert failed == {(c["check_id"], c["resource"]) for c in skipped}
