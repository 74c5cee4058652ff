"""CodeDeploy hooks: golden requests through the new version, and the status sent to CodeDeploy.

moto (5.2.5) does not implement ``PutLifecycleEventHookExecutionStatus`` (it raises
NotImplementedError), so the CodeDeploy client is a real botocore client under
``botocore.stub.Stubber``, which checks every call against CodeDeploy's API model.
The function under test is the real risk/models handler, called in-process with the
events the hook builds (what Lambda would pass to the new version).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from medserve import deploy_hooks
from medserve.deploy_hooks import GoldenRequest, band_overrides, check_response, handle, load_golden, to_event
from tests.conftest import MODELS, FakeContext, load_event, load_handler

DEPLOYMENT = {"DeploymentId": "d-ABCDEFGHI", "LifecycleEventHookExecutionId": "eyJleGVjdXRpb24iOiJ4In0="}
RISK_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:medserve-RiskFunction:7"
MODELS_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:medserve-ModelsFunction:3"
TARGETS = {"/v1/health": MODELS_ARN, "/v1/risk/": RISK_ARN}


def _real_function(arn: str, event: dict[str, Any]) -> dict[str, Any]:
    """The new version, in-process: the real handler of the function the ARN names."""
    task = {RISK_ARN: "risk", MODELS_ARN: "models"}[arn]
    return load_handler(task).lambda_handler(copy.deepcopy(event), FakeContext())


def _golden_request(name: str, body: dict[str, Any], atol: float = 1e-6) -> dict[str, Any]:
    """A breast-cancer golden request whose expected output is what the real function answers now."""
    request = {
        "name": name,
        "method": "POST",
        "path": "/v1/risk/breast-cancer/predict",
        "query": {"version": "1.0.0"},
        "headers": {"content-type": "application/json"},
        "body": body,
        "atol": atol,
        "rtol": 1e-5,
    }
    answer = _real_function(RISK_ARN, to_event(request))
    assert answer["statusCode"] == 200
    request["expect"] = {"status": 200, "json": {"predictions": json.loads(answer["body"])["predictions"]}}
    return request


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Two tiny golden files (two versions of one model id), recorded from the real function."""
    body = json.loads(load_event("risk_breast_cancer")["body"])
    one = {"instances": body["instances"][:1]}
    for version, requests in (("1.0.0", [_golden_request("one-case", one)]), ("0.9.0", [_golden_request("all", body)])):
        folder = tmp_path / "breast-cancer" / version
        folder.mkdir(parents=True)
        doc = {"model": "breast-cancer", "version": version, "requests": requests}
        (folder / "golden.json").write_text(json.dumps(doc), encoding="utf-8")
    return tmp_path


@pytest.fixture
def codedeploy() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("codedeploy", region_name="eu-west-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _expect_status(stub: Stubber, status: str) -> None:
    stub.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": DEPLOYMENT["LifecycleEventHookExecutionId"]},
        {
            "deploymentId": DEPLOYMENT["DeploymentId"],
            "lifecycleEventHookExecutionId": DEPLOYMENT["LifecycleEventHookExecutionId"],
            "status": status,
        },
    )


def test_golden_requests_through_the_new_version_report_succeeded(
    models_dir: Path, codedeploy: tuple[Any, Stubber]
) -> None:
    client, stub = codedeploy
    _expect_status(stub, "Succeeded")
    called: list[str] = []

    def invoke(arn: str, event: dict[str, Any]) -> dict[str, Any]:
        called.append(arn)
        return _real_function(arn, event)

    report = handle(DEPLOYMENT, codedeploy=client, invoke=invoke, models_dir=models_dir, targets=TARGETS)

    assert report.failed == []
    assert report.passed == ["health", "breast-cancer@0.9.0/all", "breast-cancer@1.0.0/one-case"]
    assert called == [MODELS_ARN, RISK_ARN, RISK_ARN]


def test_a_changed_output_fails_the_deployment(models_dir: Path, codedeploy: tuple[Any, Stubber]) -> None:
    client, stub = codedeploy
    _expect_status(stub, "Failed")

    def changed_model(arn: str, event: dict[str, Any]) -> dict[str, Any]:
        answer = _real_function(arn, event)
        if arn == RISK_ARN:  # the new version's scores moved by 0.01
            body = json.loads(answer["body"])
            for prediction in body["predictions"]:
                prediction["probability"] = prediction["probability"] + 0.01
            answer["body"] = json.dumps(body)
        return answer

    report = handle(DEPLOYMENT, codedeploy=client, invoke=changed_model, models_dir=models_dir, targets=TARGETS)

    assert report.passed == ["health"]
    assert len(report.failed) == 2
    assert "breast-cancer@1.0.0/one-case: differs at $.predictions[0].probability" in report.failed[1]


def test_a_non_200_answer_or_a_raising_function_fails(models_dir: Path, codedeploy: tuple[Any, Stubber]) -> None:
    client, stub = codedeploy
    _expect_status(stub, "Failed")

    def broken(arn: str, event: dict[str, Any]) -> dict[str, Any]:
        if event["pathParameters"] and event["requestContext"]["requestId"]:
            raise RuntimeError("boom")
        return {"statusCode": 500, "body": "{}"}

    report = handle(DEPLOYMENT, codedeploy=client, invoke=broken, models_dir=models_dir, targets=TARGETS)

    assert report.failed[0] == "health: status 500, recorded 200"
    assert all("invocation failed (RuntimeError)" in f for f in report.failed[1:])
    assert not any("boom" in f for f in report.failed)


def test_unreadable_golden_files_still_report_failed(tmp_path: Path, codedeploy: tuple[Any, Stubber]) -> None:
    client, stub = codedeploy
    _expect_status(stub, "Failed")
    (tmp_path / "m" / "1.0.0").mkdir(parents=True)
    (tmp_path / "m" / "1.0.0" / "golden.json").write_text("{not json", encoding="utf-8")

    report = handle(DEPLOYMENT, codedeploy=client, invoke=_real_function, models_dir=tmp_path, targets=TARGETS)

    assert not report.ok


def test_retired_versions_are_not_replayed(models_dir: Path) -> None:
    (models_dir / "breast-cancer" / "live.json").write_text(
        json.dumps({"live": "1.0.0", "retired": ["0.9.0"], "history": []}), encoding="utf-8"
    )

    assert [g.label for g in load_golden(models_dir)] == ["breast-cancer@1.0.0/one-case"]


def test_targets_come_from_the_environment_longest_prefix_first() -> None:
    env = {"MEDSERVE_HOOK_TARGETS": json.dumps({"/v1/": "a", "/v1/risk/": "b"})}
    targets = deploy_hooks.targets_from_env(env)

    assert deploy_hooks.target_for("/v1/risk/x/predict", targets) == "b"
    assert deploy_hooks.target_for("/v1/health", targets) == "a"
    assert deploy_hooks.targets_from_env({"TARGET_FUNCTION_VERSION": "arn:v9"}) == {"/": "arn:v9"}
    with pytest.raises(deploy_hooks.HookError):
        deploy_hooks.targets_from_env({})


def test_events_are_rest_proxy_events_the_handlers_route() -> None:
    png = base64.b64encode(b"\x89PNG").decode()
    event = to_event(
        {
            "method": "POST",
            "path": "/v1/imaging/chest-xray/predict",
            "query": {"version": "1.0.0"},
            "headers": {"content-type": "image/png"},
            "body_base64": png,
        }
    )

    assert event["resource"] == "/v1/imaging/{model_id}/predict"
    assert event["pathParameters"] == {"model_id": "chest-xray"}
    assert event["queryStringParameters"] == {"version": "1.0.0"}
    assert (event["body"], event["isBase64Encoded"]) == (png, True)
    assert event["requestContext"]["requestId"].startswith("deploy-hook-")


def test_comparison_uses_atol_and_rtol_and_names_paths_only() -> None:
    request = {"expect": {"status": 200, "json": {"p": [0.5, 100.0], "label": "x"}}, "atol": 1e-3, "rtol": 1e-2}

    def answer(body: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": json.dumps(body)}

    assert check_response(request, answer({"p": [0.5009, 100.9], "label": "x", "extra": 1})) == []
    assert check_response(request, answer({"p": [0.507, 100.0], "label": "x"})) == [
        "differs at $.p[0] beyond atol=0.001 rtol=0.01"
    ]
    assert check_response(request, answer({"p": [0.5], "label": "x"})) == ["differs at $.p beyond atol=0.001 rtol=0.01"]
    assert check_response(request, {"statusCode": 422, "body": "{}"}) == ["status 422, recorded 200"]


def test_band_overrides_follow_the_live_manifest(tmp_path: Path) -> None:
    for version, band in (("1.0.0", {"metric": "MeanScore", "low": 0.1, "high": 0.4}), ("2.0.0", None)):
        folder = tmp_path / "vitals-deterioration" / version
        folder.mkdir(parents=True)
        manifest = {"id": "vitals-deterioration", "version": version}
        if band:
            manifest["monitoring"] = {"band": band}
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    live = tmp_path / "vitals-deterioration" / "live.json"
    live.write_text(json.dumps({"live": "1.0.0"}), encoding="utf-8")
    assert band_overrides(tmp_path) == {"MonitoringBandVitalsDeterioration": "MeanScore,0.1,0.4"}

    # A band the promotion gate recorded in live.json for the live version wins over the manifest's
    recorded = {"version": "1.0.0", "metric": "PositiveShare", "low": 0.05, "high": 0.625}
    live.write_text(json.dumps({"live": "1.0.0", "band": recorded}), encoding="utf-8")
    assert band_overrides(tmp_path) == {"MonitoringBandVitalsDeterioration": "PositiveShare,0.05,0.625"}
    # ... but one recorded for another version is never applied: 2.0.0 live without a band of its own
    live.write_text(json.dumps({"live": "2.0.0", "band": recorded}), encoding="utf-8")
    assert band_overrides(tmp_path) == {}


def test_every_committed_model_has_a_band_for_its_live_version(capsys: pytest.CaptureFixture[str]) -> None:
    overrides = band_overrides(MODELS)
    assert set(overrides) == {
        "MonitoringBandBreastCancer",
        "MonitoringBandDiabetesProgression",
        "MonitoringBandChestXray",
        "MonitoringBandVitalsDeterioration",
    }
    for name, value in overrides.items():
        metric, low, high = value.split(",")
        assert metric == ("MeanScore" if name == "MonitoringBandDiabetesProgression" else "PositiveShare")
        assert float(low) < float(high), name
        if metric == "PositiveShare":
            assert 0.0 <= float(low) and float(high) <= 1.0, name
    # and the command prints them as `sam deploy --parameter-overrides` takes them
    assert deploy_hooks.main(["bands", str(MODELS)]) == 0
    assert capsys.readouterr().out.split() == [f"{k}={v}" for k, v in overrides.items()]


def test_golden_request_labels_hold_identifiers_only() -> None:
    golden = GoldenRequest("breast-cancer", "1.0.0", "case-1", {"path": "/v1/risk/breast-cancer/predict"})
    assert golden.label == "breast-cancer@1.0.0/case-1"


def test_binary_golden_requests_reach_the_imaging_handler_base64_encoded() -> None:
    # A PNG golden request, recorded from the real imaging handler, checks against a replay of itself
    # and fails once a recorded number is moved beyond the tolerance.
    request: dict[str, Any] = {
        "name": "png",
        "method": "POST",
        "path": "/v1/imaging/chest-xray/predict",
        "headers": {"content-type": "image/png"},
        "body_base64": load_event("imaging_png")["body"],
        "atol": 1e-5,
        "rtol": 1e-4,
    }
    first = load_handler("imaging").lambda_handler(to_event(request), FakeContext())
    assert first["statusCode"] == 200, first["body"][:300]
    recorded = json.loads(first["body"])
    numeric = {k: v for k, v in recorded.items() if k in {"prediction", "predictions"}}
    assert numeric, sorted(recorded)
    request["expect"] = {"status": 200, "json": numeric}

    replay = load_handler("imaging").lambda_handler(to_event(request), FakeContext())
    assert check_response(request, replay) == []
    shifted = copy.deepcopy(numeric)
    assert _shift_first_float(shifted)
    request["expect"]["json"] = shifted
    assert check_response(request, replay) != []


def _shift_first_float(value: Any) -> bool:
    """Add 0.01 to the first float found (depth first); True when one was found."""
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        if isinstance(item, float):
            value[key] = item + 0.01
            return True
        if _shift_first_float(item):
            return True
    return False
