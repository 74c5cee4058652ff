"""``--stack NAME``: the client reads a deployed stack's outputs (moto CloudFormation and S3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from medserve_client import Client, MedServeError
from medserve_client.cli import main

API_URL = "https://abc123defg.execute-api.us-east-1.amazonaws.com/prod"
TEMPLATE = {
    "Resources": {"Input": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "stack-in"}}},
    "Outputs": {
        "ApiUrl": {"Value": API_URL},
        "InputBucketName": {"Value": "stack-in"},
        "OutputBucketName": {"Value": "stack-out"},
    },
}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="medserve", TemplateBody=json.dumps(TEMPLATE)
        )
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="stack-out")
        yield s3


def test_from_stack_signs_for_the_stack_url(stack: Any) -> None:
    client = Client.from_stack("medserve", region="us-east-1")
    assert client.endpoint == API_URL
    assert client.signer is not None and client.signer.region == "us-east-1"


def test_batch_with_stack_uses_its_buckets(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n")
    code = main(
        ["--stack", "medserve", "--region", "us-east-1", "batch", "m", str(rows), "--wait", "0", "--out", str(tmp_path)]
    )
    assert code == 2  # nothing processes it here: it is reported pending
    assert [o["Key"] for o in stack.list_objects_v2(Bucket="stack-in")["Contents"]] == ["incoming/m/rows.csv"]
    out = capsys.readouterr().out
    assert "1 pending" in out and "s3://stack-out/results/m/" in out


def test_unknown_stack_is_a_clear_error(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MedServeError, match="cannot read stack"):
        Client.from_stack("nope", region="us-east-1")
    assert main(["--stack", "nope", "--region", "us-east-1", "models"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read stack 'nope'") and "hint:" in err
