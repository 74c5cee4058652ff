"""The /v2 routes take IAM (default) or a Cognito user pool token, as the ``V2Auth`` parameter says.

Given ``template.yaml`` transformed by SAM with the V2 parameters off (defaults) and on,
when CloudFormation's conditions are resolved for those values (tests/template/cfn_resolve.py),
then the v2 methods' security, the API's security schemes and every other route's auth are
what docs/deploy.md ("Protocol clients without SigV4") promises: with the defaults nothing
differs from IAM everywhere; with COGNITO only the three /v2 methods change.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from medserve import v2_auth
from tests.template.cfn_resolve import failed_rules, parameter_values, resolve
from tests.template.conftest import FAKE_AWS_ENV, NoManagedPolicies, _packaged

ANY = "x-amazon-apigateway-any-method"
V2_METHODS = {("GET", "/v2"), ("ANY", "/v2"), ("ANY", "/v2/{proxy+}")}
OPEN_METHODS = {("GET", "/v1/health"), ("ANY", "/v1/health")}
POOL_ARN = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbC123xyz"
SCOPE = "medserve/v2.infer"

SETTINGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "iam-with-a-pool": {"V2Auth": "IAM", "V2CognitoUserPoolArn": POOL_ARN, "V2CognitoScope": SCOPE},
    "cognito-id-token": {"V2Auth": "COGNITO", "V2CognitoUserPoolArn": POOL_ARN},
    "cognito-scope": {"V2Auth": "COGNITO", "V2CognitoUserPoolArn": POOL_ARN, "V2CognitoScope": SCOPE},
}


def _deployed(sam_template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """The transformed template (SAM given the parameter values) with CloudFormation's conditions resolved."""
    params = parameter_values(sam_template, **overrides)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_AWS_ENV.items():
            mp.setenv(key, value)
        transformed = transform(_packaged(copy.deepcopy(sam_template)), dict(overrides), NoManagedPolicies())
    assert failed_rules(transformed, params) == []
    (api,) = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    return resolve(api["Properties"]["Body"], transformed, params)


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def setting(request: pytest.FixtureRequest, sam_template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return request.param, _deployed(sam_template, SETTINGS[request.param])


def _security(body: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, list[str]]]]:
    return {
        ("ANY" if method == ANY else method.upper(), path): operation.get("security")
        for path, methods in body["paths"].items()
        for method, operation in methods.items()
    }


def test_v2_routes_take_the_auth_v2auth_names_and_every_other_route_keeps_iam(
    setting: tuple[str, dict[str, Any]],
) -> None:
    name, body = setting
    overrides = SETTINGS[name]
    v2: list[dict[str, list[str]]]
    if overrides.get("V2Auth") != "COGNITO":
        v2 = [{"AWS_IAM": []}]
    elif overrides.get("V2CognitoScope"):
        v2 = [{"V2Cognito": [SCOPE]}]
    else:
        v2 = [{"V2Cognito": []}]

    security = _security(body)

    assert V2_METHODS <= set(security)
    for route, requirements in security.items():
        if route in V2_METHODS:
            # One requirement only: SAM's NONE marker is gone and IAM is not offered beside the pool.
            assert requirements == v2, route
        elif route in OPEN_METHODS:
            assert requirements == [{"NONE": []}], route
        else:
            assert requirements == [{"AWS_IAM": []}], route


def test_the_v2_routes_still_invoke_the_inference_functions_live_alias(setting: tuple[str, dict[str, Any]]) -> None:
    _, body = setting

    for method, path in V2_METHODS:
        operation = body["paths"][path]["get" if method == "GET" else ANY]
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"
        assert "InferenceFunctionAliaslive" in str(integration["uri"])
        assert "credentials" not in integration


def test_the_cognito_scheme_exists_only_with_cognito_and_names_the_pool(setting: tuple[str, dict[str, Any]]) -> None:
    name, body = setting
    schemes = body["components"]["securitySchemes"]

    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    if SETTINGS[name].get("V2Auth") != "COGNITO":
        assert set(schemes) == {"AWS_IAM"}
        return
    assert set(schemes) == {"AWS_IAM", "V2Cognito"}
    assert schemes["V2Cognito"] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "cognito_user_pools",
        "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": [POOL_ARN]},
    }


def test_cognito_without_a_user_pool_is_refused(transformed: dict[str, Any]) -> None:
    # CloudFormation checks the rules of the transformed template (SAM keeps them).
    params = parameter_values(transformed, V2Auth="COGNITO")

    assert failed_rules(transformed, params) == ["V2CognitoNeedsAUserPool"]
    assert failed_rules(transformed, parameter_values(transformed)) == []


@pytest.mark.parametrize(
    ("parameter", "value", "allowed"),
    [
        ("V2Auth", "IAM", True),
        ("V2Auth", "COGNITO", True),
        ("V2Auth", "OIDC", False),
        ("V2Auth", "NONE", False),
        ("V2CognitoUserPoolArn", "", True),
        ("V2CognitoUserPoolArn", POOL_ARN, True),
        ("V2CognitoUserPoolArn", POOL_ARN.replace("arn:aws:", "arn:aws-us-gov:"), True),
        ("V2CognitoUserPoolArn", "eu-west-1_AbC123xyz", False),
        ("V2CognitoUserPoolArn", POOL_ARN.replace("cognito-idp", "iam"), False),
        ("V2CognitoUserPoolArn", POOL_ARN + "/*", False),
        ("V2CognitoScope", "", True),
        ("V2CognitoScope", SCOPE, True),
        ("V2CognitoScope", "a b", False),
        ("V2CognitoScope", 'x"y', False),
    ],
)
def test_v2_auth_parameters_accept_only_what_they_describe(
    sam_template: dict[str, Any], parameter: str, value: str, allowed: bool
) -> None:
    spec = sam_template["Parameters"][parameter]
    if "AllowedValues" in spec:
        accepted = value in spec["AllowedValues"]
        assert spec["Default"] == "IAM"
    else:
        # CloudFormation matches AllowedPattern against the whole value.
        accepted = re.fullmatch(spec["AllowedPattern"], value) is not None
        assert spec["Default"] == ""

    assert accepted is allowed


def test_a_changed_v2_auth_reaches_the_stage(sam_template: dict[str, Any]) -> None:
    # SAM names the API deployment by a hash of the unresolved definition: the same for every
    # V2Auth. Without a new deployment on each update the stage would keep serving the old auth.
    default, cognito = (_deployed(sam_template, SETTINGS[name]) for name in ("defaults", "cognito-id-token"))
    assert _security(default) != _security(cognito)

    assert sam_template["Resources"]["MedServeApi"]["Properties"]["AlwaysDeploy"] is True


def test_the_function_serving_openapi_json_knows_the_v2_auth(resources: dict[str, dict[str, Any]]) -> None:
    env = resources["ModelsFunction"]["Properties"]["Environment"]["Variables"]

    assert env[v2_auth.AUTH_ENV] == {"Ref": "V2Auth"}
    assert env[v2_auth.SCOPE_ENV] == {"Ref": "V2CognitoScope"}


def test_the_access_log_names_a_token_caller_without_the_token(resources: dict[str, dict[str, Any]]) -> None:
    (stage,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    fields = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])

    assert fields["tokenSub"] == "$context.authorizer.claims.sub"
    assert fields["tokenClientId"] == "$context.authorizer.claims.client_id"
    assert not [v for v in fields.values() if "header" in v.lower() or "authorization" in v.lower()]
