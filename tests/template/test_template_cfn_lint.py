"""cfn-lint finds nothing in ``template.yaml``: no error, no warning, no informational finding.

cfn-lint runs the SAM transform itself, so this lints the CloudFormation that would
be deployed, in a few regions with different service coverage. No rule is ignored.
"""

from __future__ import annotations

from pathlib import Path

from cfnlint.api import ManualArgs, lint_file

REGIONS = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"]


def test_cfn_lint_is_clean(repo_root: Path) -> None:
    matches = lint_file(repo_root / "template.yaml", config=ManualArgs(regions=REGIONS, include_checks=["I"]))

    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_cfn_lint_reports_a_broken_template(tmp_path: Path, repo_root: Path) -> None:
    # The check above can fail: the same call flags a property of the wrong type.
    broken = tmp_path / "template.yaml"
    text = (repo_root / "template.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("EnableKeyRotation: true", "EnableKeyRotation: maybe", 1), encoding="utf-8")

    matches = lint_file(broken, config=ManualArgs(regions=REGIONS))

    assert any(m.rule.id == "E3012" and "maybe" in m.message for m in matches)
