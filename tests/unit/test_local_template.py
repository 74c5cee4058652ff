"""The local runner's template reading: short-form intrinsics, Globals, routes, APIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.apigw import gateway_response, mock_response
from local.cfn import Resolver, load_template
from local.server import DEFAULT_TEMPLATE
from local.template import merge_globals, parse_template

SHORT_FORMS = """\
Parameters:
  Env: {Type: String, Default: dev}
  Empty: {Type: String, Default: ""}
Mappings:
  Sizes: {dev: {Memory: 256}, prod: {Memory: 1024}}
Conditions:
  IsDev: !Equals [!Ref Env, dev]
  HasEmpty: !Not [!Equals [!Ref Empty, ""]]
  Both: !And [!Condition IsDev, !Condition HasEmpty]
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${Env}-data-${AWS::AccountId}"
  Unnamed:
    Type: AWS::S3::Bucket
  Queue:
    Type: AWS::SQS::Queue
  Thing:
    Type: AWS::Lambda::Function
    Properties:
      Values:
        ref: !Ref Bucket
        unnamed: !Ref Unnamed
        queue: !Ref Queue
        arn: !GetAtt Bucket.Arn
        arn_list: !GetAtt [Queue, Arn]
        sub_vars: !Sub ["${A}-${Env}-${AWS::Region}", {A: !Ref Bucket}]
        sub_attr: !Sub "${Bucket.Arn}/*"
        sub_literal: !Sub "${!NotReplaced}"
        when: !If [IsDev, small, large]
        both: !If [Both, "yes", "no"]
        dropped: !If [IsDev, !Ref AWS::NoValue, kept]
        joined: !Join ["-", [a, !Ref Env, c]]
        picked: !Select [1, !Split [",", "x,y,z"]]
        memory: !FindInMap [Sizes, !Ref Env, Memory]
        listed: [one, !Ref AWS::NoValue, two]
"""


@pytest.fixture
def resolved(tmp_path: Path) -> dict:
    path = tmp_path / "t.yaml"
    path.write_text(SHORT_FORMS)
    raw = load_template(path)
    return Resolver(raw, region="eu-west-1").resolve(raw["Resources"]["Thing"]["Properties"]["Values"])


def test_short_forms_load_as_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(SHORT_FORMS)
    values = load_template(path)["Resources"]["Thing"]["Properties"]["Values"]
    assert values["ref"] == {"Ref": "Bucket"}
    assert values["arn"] == {"Fn::GetAtt": ["Bucket", "Arn"]}
    assert values["arn_list"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert values["when"] == {"Fn::If": ["IsDev", "small", "large"]}


def test_refs_and_attributes_resolve_to_local_names(resolved: dict) -> None:
    assert resolved["ref"] == "dev-data-123456789012"
    assert resolved["unnamed"] == "unnamed"
    assert resolved["queue"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/Queue"
    assert resolved["arn"] == "arn:aws:s3:::dev-data-123456789012"
    assert resolved["arn_list"].startswith("arn:aws:sqs:eu-west-1:123456789012:")


def test_sub_join_select_split_findinmap(resolved: dict) -> None:
    assert resolved["sub_vars"] == "dev-data-123456789012-dev-eu-west-1"
    assert resolved["sub_attr"] == "arn:aws:s3:::dev-data-123456789012/*"
    assert resolved["sub_literal"] == "${NotReplaced}"
    assert resolved["joined"] == "a-dev-c"
    assert resolved["picked"] == "y"
    assert resolved["memory"] == 256


def test_conditions_if_and_no_value(resolved: dict) -> None:
    assert resolved["when"] == "small"
    assert resolved["both"] == "no"
    assert "dropped" not in resolved
    assert resolved["listed"] == ["one", "two"]


def test_parameters_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(SHORT_FORMS)
    raw = load_template(path)
    values = Resolver(raw, parameters={"Env": "prod"}).resolve(raw["Resources"]["Thing"]["Properties"]["Values"])
    assert values["when"] == "large"
    assert values["memory"] == 1024
    assert values["dropped"] == "kept"


def test_merge_globals_maps_merge_lists_append_scalars_override() -> None:
    merged = merge_globals(
        {"Timeout": 3, "Layers": ["a"], "Environment": {"Variables": {"A": "1", "B": "g"}}},
        {"Timeout": 9, "Layers": ["b"], "Environment": {"Variables": {"B": "f"}}},
    )
    assert merged == {"Timeout": 9, "Layers": ["a", "b"], "Environment": {"Variables": {"A": "1", "B": "f"}}}


IMPLICIT = """\
Globals:
  Function:
    Timeout: 5
    Environment: {Variables: {DEBUG: true, N: 3}}
  Api:
    BinaryMediaTypes: ["image~1*"]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: pkg.mod.handle
      Events:
        Root: {Type: Api, Properties: {Path: /, Method: get}}
        Files: {Type: Api, Properties: {Path: "/files/{key+}", Method: ANY}}
        Sched: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
"""


def test_implicit_api_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(IMPLICIT)
    template = parse_template(path)
    fn = template.functions["Fn"]
    assert fn.code_dir == (tmp_path / "src").resolve()
    assert fn.handler == "pkg.mod.handle"
    assert fn.timeout == 5
    assert fn.memory_size == 128  # Lambda's default
    assert fn.environment == {"DEBUG": "true", "N": "3"}  # env values are strings, booleans lower case
    assert [(r.method, r.path, r.api_id, r.auth) for r in fn.routes] == [
        ("GET", "/", "ServerlessRestApi", "NONE"),
        ("ANY", "/files/{key+}", "ServerlessRestApi", "NONE"),
    ]
    api = template.apis["ServerlessRestApi"]
    assert api.stage == "Prod"  # SAM's implicit API stage
    assert api.binary_media_types == ("image/*",)
    assert list(fn.events_of_type("Schedule")) == ["Sched"]


def test_the_projects_template_is_read() -> None:
    template = parse_template(DEFAULT_TEMPLATE)
    assert template.routes, "no Api events found in template.yaml"
    for route in template.routes:
        assert route.function_id in template.functions or route.mock is not None
        assert route.method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"}
    health = [r for r in template.routes if r.path == "/v1/health" and r.method == "GET"]
    assert [r.auth for r in health] == ["NONE"]  # API.md: IAM on every route but /v1/health
    for api in template.apis.values():
        assert all("~1" not in media for media in api.binary_media_types)
        rendered = gateway_response(
            [api],
            "MISSING_AUTHENTICATION_TOKEN",
            request_id="rid-1",
            method="GET",
            raw_path="/nope",
            fallback_types=("DEFAULT_4XX",),
        )
        if rendered is not None:  # the template maps the unknown-route answer; it must stay a problem
            assert b"rid-1" in rendered.body
            assert "$context" not in rendered.body.decode()


def test_open_health_wrong_methods_are_a_mock_405_without_a_function() -> None:
    # Given the project's template, the ANY method of the open /v1/health is API Gateway's own
    # MOCK integration, so no request body ever reaches a function there.
    template = parse_template(DEFAULT_TEMPLATE)
    (mock,) = [r for r in template.routes if r.mock is not None]
    assert (mock.method, mock.path, mock.auth, mock.function_id) == ("ANY", "/v1/health", "NONE", "")

    # when it is rendered as the local runner does,
    response = mock_response(mock.mock or {}, template.apis[mock.api_id], request_id="rid-7", method="POST")

    # then it is the same 405 problem the functions give, with Allow and the request id.
    headers = dict(response.headers)
    assert response.status == 405
    assert headers["Allow"] == "GET"
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "POST is not allowed here; allowed: GET",
        "request_id": "rid-7",
    }
