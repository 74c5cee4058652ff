"""The deployed stack's controls, checked on the SAM-transformed template (what CloudFormation gets).

Issue 9 (HIPAA conformance-pack hardening), issue 10 (SnapStart behind an alias), issue 11
(canary deployments with hooks and alarms) and issue 12 (a write-once audit store). Each
test names the control; together they fail if a control is dropped or loosened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medserve.deploy_hooks import band_overrides, target_for

Resources = dict[str, dict[str, Any]]

API_FUNCTIONS = ["ModelsFunction", "RiskFunction", "ImagingFunction", "VitalsFunction", "InferenceFunction"]
SERVING_FUNCTIONS = [*API_FUNCTIONS, "BatchFunction"]
HOOKS = ["PreTrafficHook", "PostTrafficHook"]
KEY = {"Fn::GetAtt": ["MedServeKey", "Arn"]}
# Model id -> the function that serves it (its canary watches the model's prediction band).
MODEL_FUNCTION = {
    "breast-cancer": "RiskFunction",
    "diabetes-progression": "RiskFunction",
    "chest-xray": "ImagingFunction",
    "vitals-deterioration": "VitalsFunction",
}
# The only statements that may name "*": X-Ray trace writes (no resource type exists) and a
# KMS key policy's own resource (in a key policy "*" means "this key").
STAR_ALLOWED = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_of(resources: Resources, function: str) -> str:
    return resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]


# -- KMS -----------------------------------------------------------------------------------
def test_one_rotating_customer_key_encrypts_buckets_queues_logs_trail_audit_and_environment(
    of_type: Callable[[str], Resources], resources: Resources
) -> None:
    (key_id,) = of_type("AWS::KMS::Key")
    key = resources[key_id]
    policy = key["Properties"]["KeyPolicy"]["Statement"]
    services = {json.dumps(s["Principal"].get("Service")) for s in policy if "Service" in s["Principal"]}

    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    assert '{"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}' in services
    assert {'"s3.amazonaws.com"', '"cloudtrail.amazonaws.com"'} <= services
    assert all(s["Principal"] != "*" and s["Principal"].get("AWS") != "*" for s in policy)
    for statement in policy:  # every service statement is scoped to this account / stack
        if "Service" in statement["Principal"]:
            assert statement.get("Condition"), statement["Sid"]
    for bucket in of_type("AWS::S3::Bucket").values():
        (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == KEY
    for queue in of_type("AWS::SQS::Queue").values():
        assert queue["Properties"]["KmsMasterKeyId"] == KEY
    for group in of_type("AWS::Logs::LogGroup").values():
        assert group["Properties"]["KmsKeyId"] == KEY
    for function in of_type("AWS::Lambda::Function").values():
        assert function["Properties"]["KmsKeyArn"] == KEY
    (trail,) = of_type("AWS::CloudTrail::Trail").values()
    assert trail["Properties"]["KMSKeyId"] == KEY
    (stream,) = of_type("AWS::KinesisFirehose::DeliveryStream").values()
    assert stream["Properties"]["DeliveryStreamEncryptionConfigurationInput"]["KeyARN"] == KEY


# -- object-level audit and retention -----------------------------------------------------
def test_cloudtrail_records_object_access_of_the_patient_data_buckets(of_type: Callable[[str], Resources]) -> None:
    (trail,) = of_type("AWS::CloudTrail::Trail").values()
    props = trail["Properties"]
    (selector,) = props["EventSelectors"]
    (data,) = selector["DataResources"]

    assert props["IsLogging"] is True
    assert props["EnableLogFileValidation"] is True
    assert props["S3BucketName"] == {"Ref": "TrailBucket"}
    assert selector["ReadWriteType"] == "All"
    assert selector["IncludeManagementEvents"] is False  # the account's own trail has them
    assert data["Type"] == "AWS::S3::Object"
    assert {v["Fn::Sub"] for v in data["Values"]} >= {"${InputBucket.Arn}/", "${OutputBucket.Arn}/"}


@pytest.mark.parametrize("bucket", ["InputBucket", "OutputBucket"])
def test_patient_data_expires_with_its_old_versions(
    resources: Resources, transformed: dict[str, Any], bucket: str
) -> None:
    rules = resources[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
    (expiry,) = [r for r in rules if "ExpirationInDays" in r]

    assert expiry["Status"] == "Enabled"
    assert "Prefix" not in expiry and "Filter" not in expiry, "every object, not a prefix"
    assert expiry["ExpirationInDays"] == {"Ref": "DataRetentionDays"}
    assert expiry["NoncurrentVersionExpiration"]["NoncurrentDays"] == {"Ref": "DataRetentionDays"}
    assert transformed["Parameters"]["DataRetentionDays"]["Default"] == 30


# -- least privilege as deployed ----------------------------------------------------------
def test_no_role_has_a_managed_policy_but_api_gateways_account_role(of_type: Callable[[str], Resources]) -> None:
    with_managed = {
        name for name, role in of_type("AWS::IAM::Role").items() if role["Properties"].get("ManagedPolicyArns")
    }

    # API Gateway names its execution log groups itself, for every API of the account.
    assert with_managed == {"ApiGatewayCloudWatchRole"}


def test_no_statement_grants_star_where_a_resource_can_be_named(of_type: Callable[[str], Resources]) -> None:
    for name, role in of_type("AWS::IAM::Role").items():
        for statement in _statements(role):
            if "*" in _as_list(statement["Resource"]):
                assert set(_as_list(statement["Action"])) <= STAR_ALLOWED, (name, statement.get("Sid"))
            for action in _as_list(statement["Action"]):
                assert not action.endswith(":*") and action != "*", (name, action)


@pytest.mark.parametrize("function", [*SERVING_FUNCTIONS, *HOOKS])
def test_each_function_has_its_own_role_writing_only_its_own_log_group(resources: Resources, function: str) -> None:
    role = resources[_role_of(resources, function)]
    group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    log_statements = [s for s in _statements(role) if any(a.startswith("logs:") for a in _as_list(s["Action"]))]

    others = [f for f in [*SERVING_FUNCTIONS, *HOOKS] if f != function]
    assert all(_role_of(resources, other) != _role_of(resources, function) for other in others)
    assert [s["Resource"] for s in log_statements] == [{"Fn::GetAtt": [group, "Arn"]}]
    assert sorted(log_statements[0]["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]


def test_the_sqs_poller_may_touch_the_batch_queue_alone(resources: Resources) -> None:
    sqs = [
        s
        for s in _statements(resources["BatchFunctionRole"])
        if any(a.startswith("sqs:") for a in _as_list(s["Action"]))
    ]

    assert [s["Resource"] for s in sqs] == [{"Fn::GetAtt": ["BatchQueue", "Arn"]}]
    assert set(sqs[0]["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    for function in API_FUNCTIONS:
        role = json.dumps(resources[_role_of(resources, function)])
        assert "sqs:" not in role and "s3:" not in role, function


# -- API protection ------------------------------------------------------------------------
def test_waf_guards_the_stage_and_can_be_switched_off(
    resources: Resources, transformed: dict[str, Any], of_type: Callable[[str], Resources]
) -> None:
    acl = resources["ApiWebAcl"]
    association = resources["ApiWebAclAssociation"]
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    managed = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]
        for r in rules.values()
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    rate = [r for r in rules.values() if "RateBasedStatement" in r["Statement"]]
    (stage_id,) = of_type("AWS::ApiGateway::Stage")

    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert managed == {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"}
    assert len(rate) == 1 and rate[0]["Action"] == {"Block": {}}
    # The open health route takes no body (its GET would still reach the function).
    health = rules["OpenHealthTakesNoBody"]
    parts = health["Statement"]["AndStatement"]["Statements"]
    assert health["Action"] == {"Block": {}}
    assert parts[0]["ByteMatchStatement"]["SearchString"] == "/v1/health"
    assert parts[1]["SizeConstraintStatement"]["ComparisonOperator"] == "GT"
    assert parts[1]["SizeConstraintStatement"]["Size"] == 0
    assert rate[0]["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRateLimit"}
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": ["ApiWebAcl", "Arn"]}
    assert association["Properties"]["ResourceArn"]["Fn::Sub"].endswith(
        f"/restapis/${{MedServeApi}}/stages/${{{stage_id}}}"
    )
    assert acl["Condition"] == association["Condition"] == "UseWaf"
    assert transformed["Conditions"]["UseWaf"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    assert transformed["Parameters"]["EnableWaf"]["AllowedValues"] == ["true", "false"]


@pytest.mark.parametrize("function", SERVING_FUNCTIONS)
def test_reserved_concurrency_is_a_parameter_unreserved_by_default(
    resources: Resources, transformed: dict[str, Any], function: str
) -> None:
    reserved = resources[function]["Properties"]["ReservedConcurrentExecutions"]
    condition, value, otherwise = reserved["Fn::If"]
    parameter = value["Ref"]

    # A fresh account may have a quota of 10, all of which Lambda keeps unreserved: -1 deploys there.
    assert transformed["Parameters"][parameter]["Default"] == -1
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert transformed["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, -1]}]}


def test_wrong_methods_on_the_open_health_route_never_invoke_a_function(of_type: Callable[[str], Resources]) -> None:
    (api,) = of_type("AWS::ApiGateway::RestApi").values()
    operation = api["Properties"]["Body"]["paths"]["/v1/health"]["x-amazon-apigateway-any-method"]
    integration = operation["x-amazon-apigateway-integration"]
    response = integration["responses"]["default"]
    body = response["responseTemplates"]["application/json"]
    rendered = json.loads(body.replace("$context.httpMethod", "POST").replace("$context.requestId", "rid"))

    assert integration["type"] == "mock"
    assert "uri" not in integration
    assert operation["security"] == [{"NONE": []}]
    assert all(json.loads(t) == {"statusCode": 405} for t in integration["requestTemplates"].values())
    assert response["statusCode"] == "405"
    assert response["responseParameters"]["method.response.header.Allow"] == "'GET'"
    assert response["responseParameters"]["method.response.header.Content-Type"] == "'application/problem+json'"
    assert rendered == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "POST is not allowed here; allowed: GET",
        "request_id": "rid",
    }


def test_the_account_wide_api_gateway_setting_is_optional(resources: Resources, transformed: dict[str, Any]) -> None:
    (rest_api,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::RestApi"]

    assert resources["ApiGatewayAccount"]["Condition"] == "SetApiGatewayAccount"
    assert resources["ApiGatewayCloudWatchRole"]["Condition"] == "SetApiGatewayAccount"
    # DependsOn cannot name a conditional resource: the API waits on a handle that refers to it.
    assert "ApiGatewayAccountSet" in _as_list(rest_api["DependsOn"])
    handle = resources["ApiGatewayAccountSet"]
    assert "Condition" not in handle
    assert handle["Metadata"]["AccountSetting"]["Fn::If"][:2] == ["SetApiGatewayAccount", {"Ref": "ApiGatewayAccount"}]
    assert transformed["Parameters"]["ManageApiGatewayAccount"]["AllowedValues"] == ["true", "false"]


def test_dlq_is_tls_only_and_accepts_the_batch_queue_alone(resources: Resources) -> None:
    dlq = resources["BatchDLQ"]["Properties"]
    (policy,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [{"Ref": "BatchDLQ"}]
    ]
    (deny,) = policy["PolicyDocument"]["Statement"]

    assert dlq["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    (source,) = dlq["RedriveAllowPolicy"]["sourceQueueArnList"]
    assert source["Fn::Sub"].endswith(":" + resources["BatchQueue"]["Properties"]["QueueName"]["Fn::Sub"])
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# -- SnapStart behind the live alias (issue 10) --------------------------------------------
@pytest.mark.parametrize("function", SERVING_FUNCTIONS)
def test_snapstart_on_published_versions_behind_the_live_alias(resources: Resources, function: str) -> None:
    props = resources[function]["Properties"]
    (alias,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Alias" and r["Properties"]["FunctionName"] == {"Ref": function}
    ]
    versions = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Version" and r["Properties"]["FunctionName"] == {"Ref": function}
    ]

    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert alias["Properties"]["Name"] == "live"
    assert len(versions) == 1
    # SnapStart's limits: ephemeral storage <= 512 MB, no EFS, no provisioned concurrency.
    assert props.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    assert "FileSystemConfigs" not in props
    assert "ProvisionedConcurrencyConfig" not in alias["Properties"]


def test_hooks_take_no_snapshot_and_no_canary_of_their_own(resources: Resources) -> None:
    for hook in HOOKS:
        assert resources[hook]["Properties"]["SnapStart"] == {"ApplyOn": "None"}
        assert f"{hook}DeploymentGroup" not in resources


# -- canary deployments (issue 11) ---------------------------------------------------------
@pytest.mark.parametrize("function", API_FUNCTIONS)
def test_api_functions_deploy_by_canary_with_hooks_and_rollback_alarms(
    resources: Resources, transformed: dict[str, Any], function: str
) -> None:
    (alias,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Alias" and r["Properties"]["FunctionName"] == {"Ref": function}
    ]
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    group = resources[update["DeploymentGroupName"]["Ref"]]["Properties"]
    alarms = {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}
    metrics = {resources[a]["Properties"].get("MetricName", "band") for a in alarms}
    models = {m for m, f in MODEL_FUNCTION.items() if f == function}
    band_alarms = {a for a in alarms if "Band" in a}

    assert resources[update["ApplicationName"]["Ref"]]["Type"] == "AWS::CodeDeploy::Application"
    assert update["BeforeAllowTrafficHook"] == {"Ref": "PreTrafficHook"}
    assert update["AfterAllowTrafficHook"] == {"Ref": "PostTrafficHook"}
    assert group["ServiceRoleArn"] == {"Fn::GetAtt": ["CodeDeployRole", "Arn"]}
    assert group["AlarmConfiguration"]["Enabled"] is True
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    assert (
        group["DeploymentConfigName"]["Fn::Sub"][1]["ConfigName"]
        == (transformed["Parameters"]["DeploymentType"]["Default"])
    )
    assert transformed["Parameters"]["DeploymentType"]["Default"] == "Canary10Percent10Minutes"
    assert "AllAtOnce" in transformed["Parameters"]["DeploymentType"]["AllowedValues"]
    assert {"Errors", "UnhandledErrors", "Duration"} <= metrics
    assert len(band_alarms) == 2 * len(models)
    for alarm in band_alarms:  # the prediction distribution of each model this function serves
        query = json.dumps(resources[alarm]["Properties"]["Metrics"])
        assert any(f"WHERE ModelId = '{m}'" in query for m in models), alarm


def test_every_served_model_has_a_band_alarm_pair(resources: Resources, repo_root: Path) -> None:
    models = {
        p.name for p in (repo_root / "layers" / "models").iterdir() if p.is_dir() and any(p.glob("*/manifest.json"))
    }
    queries = [
        json.dumps(r["Properties"]["Metrics"])
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "ModelId" in json.dumps(r["Properties"].get("Metrics"))
    ]

    assert models == set(MODEL_FUNCTION)
    for model in models:
        assert sum(f"WHERE ModelId = '{model}'" in q for q in queries) == 2, model


def test_band_defaults_are_the_bands_recorded_for_the_live_versions(
    transformed: dict[str, Any], repo_root: Path
) -> None:
    # `sam deploy --guided` without overrides deploys the bands the promotion gate recorded in live.json
    params = transformed["Parameters"]
    defaults = {name: params[name]["Default"] for name in params if name.startswith("MonitoringBand")}
    assert defaults == band_overrides(repo_root / "layers" / "models")
    for name, value in defaults.items():
        metric, low, high = value.split(",")
        assert metric in {"PositiveShare", "MeanScore"}, name
        assert float(low) < float(high), name


def test_hooks_may_invoke_only_the_versions_and_aliases_they_check(resources: Resources) -> None:
    pre = {s["Sid"]: s for s in _statements(resources["PreTrafficHookRole"])}
    post = {s["Sid"]: s for s in _statements(resources["PostTrafficHookRole"])}
    codedeploy = resources["CodeDeployRole"]
    env = json.dumps(resources["PreTrafficHook"]["Properties"]["Environment"]["Variables"]["MEDSERVE_HOOK_TARGETS"])

    versions = {r["Ref"] for r in pre["InvokeTheNewVersions"]["Resource"]}
    assert {resources[v]["Properties"]["FunctionName"]["Ref"] for v in versions} == set(API_FUNCTIONS)
    assert all(resources[v]["Type"] == "AWS::Lambda::Version" for v in versions)
    assert all(f"${{{v}}}" in env for v in versions), "the hook tests the versions it may invoke"
    assert {r["Fn::Sub"] for r in post["InvokeTheLiveAliases"]["Resource"]} == {
        f"${{{f}.Arn}}:live" for f in API_FUNCTIONS
    }
    for statements in (pre, post):
        report = statements["ReportToThisStacksDeploymentGroups"]
        assert report["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"
        assert "deploymentgroup:${ServerlessDeploymentApplication}/*" in report["Resource"]["Fn::Sub"]
    (invoke,) = [s for s in _statements(codedeploy) if s["Action"] == "lambda:InvokeFunction"]
    assert invoke["Resource"] == [{"Fn::GetAtt": [h, "Arn"]} for h in HOOKS]


def _hook_target_function(resources: Resources, target: str) -> str:
    """The function a hook target names: ``${<Version>}`` (PreTraffic) or ``${<Function>.Arn}:live``."""
    live = re.fullmatch(r"\$\{(\w+)\.Arn\}:live", target)
    if live:
        return live.group(1)
    version = re.fullmatch(r"\$\{(\w+)\}", target)
    assert version and resources[version.group(1)]["Type"] == "AWS::Lambda::Version", target
    return str(resources[version.group(1)]["Properties"]["FunctionName"]["Ref"])


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_targets_send_every_api_route_to_the_function_serving_it(
    resources: Resources, of_type: Callable[[str], Resources], hook: str
) -> None:
    variables = resources[hook]["Properties"]["Environment"]["Variables"]
    targets = json.loads(variables["MEDSERVE_HOOK_TARGETS"]["Fn::Sub"])
    (api,) = of_type("AWS::ApiGateway::RestApi").values()
    checked = set()

    for path, methods in api["Properties"]["Body"]["paths"].items():
        for operation in methods.values():
            uri = json.dumps(operation["x-amazon-apigateway-integration"].get("uri", ""))
            match = re.search(r"functions/\$\{(\w+)Aliaslive\}/invocations", uri)
            if not match:  # the MOCK 405 on /v1/health invokes nothing
                continue
            # A golden request on this route would be checked on the function serving it.
            concrete = re.sub(r"{[^}]+}", "x", path.replace("{proxy+}", "models/x/infer"))
            assert _hook_target_function(resources, target_for(concrete, targets)) == match.group(1), (hook, path)
            checked.add(match.group(1))
    assert checked == set(API_FUNCTIONS)


# -- write-once audit store (issue 12) -------------------------------------------------------
def test_audit_records_reach_an_object_locked_bucket(
    resources: Resources, transformed: dict[str, Any], of_type: Callable[[str], Resources]
) -> None:
    bucket = resources["AuditBucket"]["Properties"]
    lock = bucket["ObjectLockConfiguration"]
    (stream,) = of_type("AWS::KinesisFirehose::DeliveryStream").values()
    destination = stream["Properties"]["ExtendedS3DestinationConfiguration"]
    subscriptions = of_type("AWS::Logs::SubscriptionFilter").values()

    assert bucket["ObjectLockEnabled"] is True
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": {"Ref": "AuditRetentionDays"}}
    assert transformed["Parameters"]["AuditRetentionDays"]["MinValue"] >= 1
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert resources["AuditBucket"]["DeletionPolicy"] == "Retain"
    assert destination["BucketARN"] == {"Fn::GetAtt": ["AuditBucket", "Arn"]}
    assert destination["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"] == KEY
    # Only audit lines, from every serving function's log group.
    assert {s["Properties"]["LogGroupName"]["Ref"] for s in subscriptions} == {
        resources[f]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in SERVING_FUNCTIONS
    }
    for subscription in subscriptions:
        assert subscription["Properties"]["FilterPattern"] == "{ $.audit IS TRUE }"
        assert subscription["Properties"]["DestinationArn"] == {"Fn::GetAtt": ["AuditDeliveryStream", "Arn"]}
    writes = [s for s in _statements(resources["AuditDeliveryRole"]) if "s3:PutObject" in _as_list(s["Action"])]
    assert [s["Resource"] for s in writes] == [{"Fn::Sub": "${AuditBucket.Arn}/audit*"}]
    for statement in _statements(resources["AuditDeliveryRole"]):
        assert "s3:DeleteObject" not in _as_list(statement["Action"])
        assert not any("Retention" in a or "LegalHold" in a for a in _as_list(statement["Action"]))


def test_shadow_scoring_is_a_switch_off_by_default_on_every_api_function(
    transformed: dict[str, Any], of_type: Callable[[str], Resources]
) -> None:
    from medserve.shadow import SAMPLE_ENV, SHADOW_ENV, Shadow

    params = transformed["Parameters"]
    defaults = {SHADOW_ENV: params["ShadowModels"]["Default"], SAMPLE_ENV: params["ShadowSampleRate"]["Default"]}
    assert not Shadow.from_env(environ=defaults).on
    serving = 0
    for name, fn in of_type("AWS::Lambda::Function").items():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        if "MEDSERVE_MODELS_DIR" in env:  # the functions that serve models
            serving += 1
            assert env[SHADOW_ENV] == {"Ref": "ShadowModels"}, name
            assert env[SAMPLE_ENV] == {"Ref": "ShadowSampleRate"}, name
    assert serving >= 4
    # the parameters refuse what the function would ignore
    models, rate = (
        re.compile(params["ShadowModels"]["AllowedPattern"]),
        re.compile(params["ShadowSampleRate"]["AllowedPattern"]),
    )
    assert models.fullmatch("vitals-deterioration@2.0.0,breast-cancer@1.1.0") and models.fullmatch("")
    assert not models.fullmatch("vitals-deterioration") and not models.fullmatch("x@2")
    assert rate.fullmatch("0.05") and rate.fullmatch("1") and rate.fullmatch("0")
    assert not rate.fullmatch("1.5") and not rate.fullmatch("-0.1") and not rate.fullmatch("5%")
