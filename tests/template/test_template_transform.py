"""The SAM transform of ``template.yaml`` (offline) builds the stack the design asks for.

Given the template, when the SAM translator turns it into plain CloudFormation
(code URIs replaced by S3 URIs as ``sam package`` would), then the functions,
routes, auth, queues, buckets and policies are the ones shared/API.md and
shared/DESIGN.md describe.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.template.cfn_resolve import parameter_values, resolve

Resources = dict[str, dict[str, Any]]

FUNCTIONS = {
    "ModelsFunction": "functions/models/",
    "RiskFunction": "functions/risk/",
    "ImagingFunction": "functions/imaging/",
    "VitalsFunction": "functions/vitals/",
    "BatchFunction": "functions/batch/",
    "InferenceFunction": "functions/inference/",
}
API_FUNCTIONS = ["ModelsFunction", "RiskFunction", "ImagingFunction", "VitalsFunction", "InferenceFunction"]
# CodeDeploy lifecycle hooks (one code folder, two handlers).
HOOKS = {"PreTrafficHook": "app.pre_traffic", "PostTrafficHook": "app.post_traffic"}

# shared/API.md, "Routes": method, path -> function. Each path also has an ANY twin
# on the same function so that a wrong method reaches it and gets a 405 problem.
CONTRACT_ROUTES = {
    ("GET", "/v1/health"): "ModelsFunction",
    ("GET", "/v1/models"): "ModelsFunction",
    ("GET", "/v1/models/{model_id}"): "ModelsFunction",
    ("POST", "/v1/risk/{model_id}/predict"): "RiskFunction",
    ("POST", "/v1/imaging/{model_id}/predict"): "ImagingFunction",
    ("POST", "/v1/vitals/{model_id}/predict"): "VitalsFunction",
    ("GET", "/openapi.json"): "ModelsFunction",
    ("GET", "/v2"): "InferenceFunction",
}
# The Open Inference Protocol v2 below /v2 (docs/v2.md): one greedy route, routed by the function.
PROXY_ROUTES = {("ANY", "/v2/{proxy+}"): "InferenceFunction"}
# /v1/health is open on every method (GET answers; the rest get API Gateway's own MOCK 405).
OPEN_ROUTES = {("GET", "/v1/health"), ("ANY", "/v1/health")}
MOCK_ROUTES = {("ANY", "/v1/health")}
ANY = "x-amazon-apigateway-any-method"
# Every gateway response type API Gateway (REST) has: each one answers problem+json.
GATEWAY_RESPONSE_TYPES = {
    "ACCESS_DENIED",
    "API_CONFIGURATION_ERROR",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_FAILURE",
    "BAD_REQUEST_BODY",
    "BAD_REQUEST_PARAMETERS",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
    "INVALID_API_KEY",
    "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "RESOURCE_NOT_FOUND",
    "THROTTLED",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "WAF_FILTERED",
}


def _one(found: Resources) -> tuple[str, dict[str, Any]]:
    assert len(found) == 1, f"expected exactly one, got {sorted(found)}"
    return next(iter(found.items()))


def _api_body(of_type: Callable[[str], Resources]) -> dict[str, Any]:
    _, api = _one(of_type("AWS::ApiGateway::RestApi"))
    return api["Properties"]["Body"]


def _routes(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    routes = {}
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            routes[("ANY" if method == ANY else method.upper(), path)] = operation
    return routes


def _target_function(operation: dict[str, Any]) -> str:
    """The function whose ``live`` alias the integration invokes (never the unqualified function)."""
    uri = json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
    match = re.search(r"functions/\$\{(\w+)Aliaslive\}/invocations", uri)
    assert match, uri
    return match.group(1)


def test_every_function_and_both_hooks_are_python312_x86_64_with_the_three_layers(
    of_type: Callable[[str], Resources],
) -> None:
    functions = of_type("AWS::Lambda::Function")
    layers = of_type("AWS::Lambda::LayerVersion")

    assert set(functions) == set(FUNCTIONS) | set(HOOKS)
    assert len(layers) == 3
    for name, fn in functions.items():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.12", name
        assert props["Architectures"] == ["x86_64"], name
        assert props["Handler"] == HOOKS.get(name, "app.lambda_handler"), name
        assert props["Code"]["S3Key"] == FUNCTIONS.get(name, "functions/deploy_hooks/").strip("/"), name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert sorted(layer["Ref"] for layer in props["Layers"]) == sorted(layers), name
        env = props["Environment"]["Variables"]
        assert env["MEDSERVE_MODELS_DIR"] == "/opt/models", name
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "MedServe", name
        assert env["MEDSERVE_ORT_THREADS"] in {"1", "2"}, name
    services = [fn["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for fn in functions.values()]
    assert len(set(services)) == len(functions), "each function names its own Powertools service"


def test_layers_are_python312_x86_64_and_deleted_with_their_versions(
    of_type: Callable[[str], Resources],
) -> None:
    for name, layer in of_type("AWS::Lambda::LayerVersion").items():
        props = layer["Properties"]
        assert props["CompatibleRuntimes"] == ["python3.12"], name
        assert props["CompatibleArchitectures"] == ["x86_64"], name
        assert layer["DeletionPolicy"] == "Delete", name


def test_layers_build_with_their_makefiles_without_docker(sam_template: dict[str, Any], repo_root: Path) -> None:
    for name in ("RuntimeLayer", "CommonLayer", "ModelsLayer"):
        layer = sam_template["Resources"][name]
        assert layer["Metadata"]["BuildMethod"] == "makefile", name
        makefile = repo_root / layer["Properties"]["ContentUri"] / "Makefile"
        assert re.search(rf"^build-{name}:", makefile.read_text(encoding="utf-8"), re.M), makefile


def test_api_timeouts_fit_api_gateway_and_batch_has_more(of_type: Callable[[str], Resources]) -> None:
    functions = of_type("AWS::Lambda::Function")

    for name in API_FUNCTIONS:
        assert functions[name]["Properties"]["Timeout"] <= 29, name
    assert functions["BatchFunction"]["Properties"]["Timeout"] == 300
    assert (
        functions["ImagingFunction"]["Properties"]["MemorySize"] > functions["RiskFunction"]["Properties"]["MemorySize"]
    )


def test_routes_are_exactly_the_contract_plus_any_twins(of_type: Callable[[str], Resources]) -> None:
    routes = _routes(_api_body(of_type))
    expected = dict(CONTRACT_ROUTES)
    expected.update({("ANY", path): fn for (_method, path), fn in CONTRACT_ROUTES.items()})
    expected.update(PROXY_ROUTES)
    for route in MOCK_ROUTES:
        expected.pop(route)

    assert set(routes) == set(expected) | MOCK_ROUTES
    lambda_routes = {route: op for route, op in routes.items() if route not in MOCK_ROUTES}
    assert {route: _target_function(op) for route, op in lambda_routes.items()} == expected
    for route, op in lambda_routes.items():
        integration = op["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", route
        # InvokeRole NONE: API Gateway uses the function's resource policy, not the caller's credentials.
        assert "credentials" not in integration, route


def test_iam_auth_everywhere_but_get_health(of_type: Callable[[str], Resources], transformed: dict[str, Any]) -> None:
    # With the default parameters (the /v2 routes' auth is a condition: test_template_v2_auth.py).
    routes = _routes(resolve(_api_body(of_type), transformed, parameter_values(transformed)))

    for route, op in routes.items():
        schemes = {name for requirement in op.get("security", []) for name in requirement}
        if route in OPEN_ROUTES:
            assert schemes == {"NONE"}, route
        else:
            assert schemes == {"AWS_IAM"}, route


def _source_arn_pattern(permission: dict[str, Any]) -> str:
    """A permission's execute-api SourceArn as a glob over ``<api>/<stage>/<METHOD>/<path>``."""
    source = permission["Properties"]["SourceArn"]["Fn::Sub"]
    text = source[0] if isinstance(source, list) else source
    _, found, rest = re.split(r"(\$\{(?:__ApiId__|MedServeApi)\}/)", text, maxsplit=1)
    assert found, text
    return rest.replace("${__Stage__}", "*")


def test_every_route_may_invoke_its_functions_live_alias(of_type: Callable[[str], Resources]) -> None:
    permissions = [
        p
        for p in of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    routes = _routes(_api_body(of_type))

    assert {p["Properties"]["FunctionName"]["Ref"] for p in permissions} == {f"{f}Aliaslive" for f in API_FUNCTIONS}
    for (method, path), op in routes.items():
        if (method, path) in MOCK_ROUTES:
            continue
        function = _target_function(op)
        # API Gateway checks "<api>/<stage>/<METHOD>/<path with the parameter values>"; a greedy
        # {proxy+} takes several segments.
        concrete = re.sub(r"{[^}]+}", "x", path.replace("{proxy+}", "models/x/infer"))
        request = f"prod/{'PATCH' if method == 'ANY' else method}/{concrete.lstrip('/')}"
        allowing = [
            p
            for p in permissions
            if p["Properties"]["FunctionName"]["Ref"] == f"{function}Aliaslive"
            and fnmatch.fnmatchcase(request, _source_arn_pattern(p))
        ]
        assert allowing, (method, path)


def test_binary_media_types(of_type: Callable[[str], Resources]) -> None:
    body = _api_body(of_type)

    assert set(body["x-amazon-apigateway-binary-media-types"]) == {
        "image/png",
        "image/jpeg",
        "application/dicom",
        "application/octet-stream",
    }


def test_one_prod_stage_traced_throttled_access_logged_without_bodies(
    of_type: Callable[[str], Resources], resources: Resources
) -> None:
    _, stage = _one(of_type("AWS::ApiGateway::Stage"))
    props = stage["Properties"]

    assert props["StageName"] == "prod"
    assert props["TracingEnabled"] is True
    log_group = props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert "$context.requestId" in props["AccessLogSetting"]["Format"]
    (setting,) = props["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert "ThrottlingRateLimit" in setting
    assert "ThrottlingBurstLimit" in setting
    assert setting["DataTraceEnabled"] is False


def _render(template: str) -> dict[str, Any]:
    """A gateway response body as API Gateway would send it (variables substituted)."""
    body = template.replace("$context.error.messageString", json.dumps("Missing Authentication Token"))
    body = body.replace("$context.requestId", "c0ffee00-0000-4000-8000-000000000000")
    assert "$" not in body, body
    return json.loads(body)


def test_gateway_responses_are_problem_json(of_type: Callable[[str], Resources]) -> None:
    responses = _api_body(of_type)["x-amazon-apigateway-gateway-responses"]

    assert set(responses) == GATEWAY_RESPONSE_TYPES
    for kind, response in responses.items():
        content_type = response["responseParameters"]["gatewayresponse.header.Content-Type"]
        assert content_type == "'application/problem+json'", kind
        problem = _render(response["responseTemplates"]["application/json"])
        # Every problem member, status included, and it is the status actually sent. A 401 comes
        # only from the /v2 routes' token authorizer: a v2 problem, with the protocol's "error".
        members = {"type", "title", "status", "detail", "request_id"} | ({"error"} if kind == "UNAUTHORIZED" else set())
        assert set(problem) == members, kind
        assert problem["status"] == int(response["statusCode"]), kind


def test_unknown_routes_answer_404_problem(of_type: Callable[[str], Resources]) -> None:
    response = _api_body(of_type)["x-amazon-apigateway-gateway-responses"]["MISSING_AUTHENTICATION_TOKEN"]

    assert response["statusCode"] == "404"
    assert _render(response["responseTemplates"]["application/json"])["title"] == "Not Found"


def test_batch_queue_outlasts_six_function_timeouts_and_redrives_to_dlq(resources: Resources) -> None:
    queue = resources["BatchQueue"]["Properties"]
    dlq = resources["BatchDLQ"]["Properties"]
    batch_timeout = resources["BatchFunction"]["Properties"]["Timeout"]

    assert queue["VisibilityTimeout"] >= 6 * batch_timeout
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["BatchDLQ", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": ["MedServeKey", "Arn"]}
    assert dlq["KmsMasterKeyId"] == {"Fn::GetAtt": ["MedServeKey", "Arn"]}


def test_batch_event_source_reports_item_failures(of_type: Callable[[str], Resources]) -> None:
    _, mapping = _one(of_type("AWS::Lambda::EventSourceMapping"))
    props = mapping["Properties"]

    assert props["FunctionName"] == {"Ref": "BatchFunctionAliaslive"}  # the alias, never $LATEST
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert props["BatchSize"] == 5
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 <= props["MaximumBatchingWindowInSeconds"] <= 10


@pytest.mark.parametrize("bucket", ["InputBucket", "OutputBucket", "TrailBucket", "AuditBucket"])
def test_buckets_encrypted_private_versioned_and_tls_only(resources: Resources, bucket: str) -> None:
    props = resources[bucket]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policies = [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]

    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["MedServeKey", "Arn"]},
    }
    assert resources[bucket]["DeletionPolicy"] == "Retain"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert len(policies) == 1
    deny_tls = [
        s
        for s in policies[0]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(deny_tls) == 1
    assert deny_tls[0]["Principal"] == "*"
    resources_denied = json.dumps(deny_tls[0]["Resource"])
    assert f'"{bucket}", "Arn"' in resources_denied
    assert f"${{{bucket}.Arn}}/*" in resources_denied


def test_input_bucket_notifies_the_queue_for_incoming_only_without_a_cycle(resources: Resources) -> None:
    bucket = resources["InputBucket"]
    (notification,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    policy = resources["BatchQueuePolicy"]["Properties"]
    (allow,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    bucket_name = bucket["Properties"]["BucketName"]["Fn::Sub"]

    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Queue"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
    assert "BatchQueuePolicy" in bucket["DependsOn"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    # The policy names the bucket by string: a Ref/GetAtt of InputBucket would be a cycle.
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"].endswith(f":s3:::{bucket_name}")
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    rendered = json.dumps(policy)
    for reference in ('{"Ref": "InputBucket"}', '["InputBucket",', "${InputBucket"):
        assert reference not in rendered


def _batch_statements(resources: Resources) -> list[dict[str, Any]]:
    role = resources["BatchFunctionRole"]["Properties"]
    return [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resource_strings(statement: dict[str, Any]) -> list[str]:
    found = statement["Resource"]
    return [json.dumps(r) for r in (found if isinstance(found, list) else [found])]


def _is_s3_write(action: str) -> bool:
    return action in {"*", "s3:*"} or (action.startswith("s3:") and not action.startswith(("s3:Get", "s3:List")))


def test_batch_reads_incoming_and_writes_only_results_and_errors(resources: Resources) -> None:
    statements = _batch_statements(resources)
    managed = resources["BatchFunctionRole"]["Properties"].get("ManagedPolicyArns", [])
    reads = [s for s in statements if any(a.startswith("s3:Get") for a in _actions(s))]
    writes = [s for s in statements if s["Effect"] == "Allow" and any(_is_s3_write(action) for action in _actions(s))]

    assert not any("S3" in json.dumps(arn) for arn in managed), "no broad managed S3 policy"
    assert reads
    assert writes
    # Reads: the incoming objects, and its own outputs (to keep one outcome per object).
    allowed_reads = ("${InputBucket}/incoming/*", "${OutputBucket}/results/*", "${OutputBucket}/errors/*")
    for statement in reads:
        for resource in _resource_strings(statement):
            assert any(prefix in resource for prefix in allowed_reads), resource
    write_targets = sorted(r for s in writes for r in _resource_strings(s))
    assert len(write_targets) == 2
    assert "${OutputBucket}/errors/*" in write_targets[0]
    assert "${OutputBucket}/results/*" in write_targets[1]
    for statement in writes:
        writes_in_statement = [a for a in _actions(statement) if _is_s3_write(a)]
        assert sorted(writes_in_statement) == ["s3:DeleteObject", "s3:PutObject"]
        assert "InputBucket" not in json.dumps(statement["Resource"]), "must not write its own input"


def test_batch_environment(resources: Resources) -> None:
    env = resources["BatchFunction"]["Properties"]["Environment"]["Variables"]

    assert env["MEDSERVE_OUTPUT_BUCKET"] == {"Ref": "OutputBucket"}
    assert int(env["MEDSERVE_BATCH_MAX_BYTES"]) == 50 * 1024 * 1024
    assert int(env["MEDSERVE_BATCH_MAX_ROWS"]) == 100_000


def test_each_function_logs_to_its_own_encrypted_log_group_with_the_retention_parameter(
    of_type: Callable[[str], Resources], resources: Resources, transformed: dict[str, Any]
) -> None:
    functions = of_type("AWS::Lambda::Function")
    groups = [fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for fn in functions.values()]

    assert len(set(groups)) == len(functions), "one log group per function"
    for name, fn in functions.items():
        assert fn["Properties"]["LoggingConfig"]["LogFormat"] == "JSON", name
    for group in [*groups, "ApiAccessLogGroup", "AuditDeliveryLogGroup"]:
        props = resources[group]["Properties"]
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["MedServeKey", "Arn"]}, group
        assert props["LogGroupName"]["Fn::Sub"].startswith(("/aws/lambda/${AWS::StackName}/", "/aws/")), group
    assert transformed["Parameters"]["LogRetentionDays"]["Default"] == 365


def test_alarms_watch_the_dlq_queue_age_and_every_function(of_type: Callable[[str], Resources]) -> None:
    alarms = [a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()]
    plain = [a for a in alarms if "Metrics" not in a]

    def watching(namespace: str, metric: str) -> set[str]:
        found = set()
        for alarm in plain:
            if (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric):
                value = alarm["Dimensions"][0]["Value"]
                found.add(value.get("Ref") or value["Fn::GetAtt"][0] if isinstance(value, dict) else value)
        return found

    assert watching("AWS/SQS", "ApproximateNumberOfMessagesVisible") == {"BatchDLQ"}
    assert watching("AWS/SQS", "ApproximateAgeOfOldestMessage") == {"BatchQueue"}
    assert watching("AWS/Lambda", "Errors") == set(FUNCTIONS)
    assert watching("AWS/Lambda", "Throttles") == set(FUNCTIONS)
    assert watching("AWS/Lambda", "Duration") == set(API_FUNCTIONS)
    # API functions answer their own bugs as 500 problems, so Lambda's Errors misses them:
    # MedServe/UnhandledErrors per API function's Powertools service.
    env = {n: of_type("AWS::Lambda::Function")[n]["Properties"]["Environment"]["Variables"] for n in API_FUNCTIONS}
    assert watching("MedServe", "UnhandledErrors") == {env[n]["POWERTOOLS_SERVICE_NAME"] for n in API_FUNCTIONS}
    for alarm in alarms:
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic"


def test_outputs(transformed: dict[str, Any]) -> None:
    outputs = transformed["Outputs"]

    assert set(outputs) >= {"ApiUrl", "InputBucketName", "OutputBucketName", "BatchQueueUrl", "BatchDLQUrl"}
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${MedServeApi}.execute-api.${AWS::Region}.amazonaws.com/prod"
    }
    assert outputs["InputBucketName"]["Value"] == {"Ref": "InputBucket"}
    assert outputs["OutputBucketName"]["Value"] == {"Ref": "OutputBucket"}


def test_local_bucket_names_are_recorded_for_the_runner(sam_template: dict[str, Any]) -> None:
    local = sam_template["Metadata"]["MedServe"]["Local"]
    deployed = sam_template["Resources"]["InputBucket"]["Properties"]["BucketName"]["Fn::Sub"]

    # shared/API.md, "Batch (S3)": the local runner's buckets.
    assert (local["InputBucket"], local["OutputBucket"]) == ("medserve-input", "medserve-output")
    assert local["IncomingPrefix"] == "incoming/"
    assert deployed == "${BucketNamePrefix}-input-${AWS::AccountId}-${AWS::Region}"
    assert sam_template["Parameters"]["BucketNamePrefix"]["Default"] == "medserve"
