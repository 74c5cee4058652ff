"""The local runner (``local``) against a tiny fake template and fake functions written to tmp.

Nothing here depends on the real handlers: the functions are small echo/boom handlers
that report what API Gateway and Lambda gave them.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from local import LocalApi
from local.apigw import LAMBDA_SYNC_PAYLOAD_LIMIT
from local.server import REPO_ROOT

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Prefix: {Type: String, Default: demo}
Conditions:
  IsDemo: !Equals [!Ref Prefix, demo]
Globals:
  Function:
    Runtime: python3.12
    Timeout: 7
    MemorySize: 256
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: globals
        MEDSERVE_MODELS_DIR: /opt/models
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      Auth: {DefaultAuthorizer: AWS_IAM}
      BinaryMediaTypes: [image~1png, application~1dicom]
      GatewayResponses:
        MISSING_AUTHENTICATION_TOKEN:
          StatusCode: "404"
          ResponseParameters:
            Headers: {Content-Type: "'application/problem+json'"}
          ResponseTemplates:
            application/json: >-
              {"type":"about:blank","title":"Not Found","status":404,"detail":"no route",
              "request_id":"$context.requestId"}
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/echo/
      Handler: app.lambda_handler
      MemorySize: 512
      Environment:
        Variables:
          POWERTOOLS_SERVICE_NAME: echo
          OVERRIDDEN: echo
          BUCKET: !Sub "${Prefix}-bucket-${AWS::Region}"
          FLAG: !If [IsDemo, "yes", "no"]
      Events:
        Item:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: "/v1/items/{item_id}", Method: GET}
        ItemAny:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: "/v1/items/{item_id}", Method: any}
        Special:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/items/special, Method: GET}
        Upload:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/upload, Method: POST}
        Health:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/health, Method: GET, Auth: {Authorizer: NONE}}
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/other/
      Handler: app.lambda_handler
      Environment:
        Variables:
          POWERTOOLS_SERVICE_NAME: other
          ONLY_OTHER: "1"
      Events:
        Proxy:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: "/v1/other/{proxy+}", Method: ANY}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/boom/
      Handler: app.lambda_handler
      Events:
        Boom:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/boom, Method: GET}
        Malformed:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/malformed, Method: GET}
  BrokenFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/broken/
      Handler: app.lambda_handler
      Events:
        Broken:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /v1/broken, Method: GET}
  QueueFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/queue/
      Handler: app.handler
      Events:
        Incoming:
          Type: SQS
          Properties: {Queue: !GetAtt Queue.Arn, BatchSize: 10}
  Queue:
    Type: AWS::SQS::Queue
"""

ECHO_APP = """\
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import helper  # a sibling module: each function must get its own

with open(Path(__file__).with_name("imports.log"), "a") as fh:
    fh.write("imported\\n")

KEYS = ("SHARED", "OVERRIDDEN", "BUCKET", "FLAG", "ONLY_OTHER", "MEDSERVE_MODELS_DIR",
        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "AWS_LAMBDA_FUNCTION_NAME")
INIT_ENV = {k: os.environ.get(k) for k in KEYS}


def lambda_handler(event, context):
    if event["resource"] == "/v1/items/special":
        return {
            "statusCode": 201,
            "headers": {"X-One": "a", "X-Multi": "ignored", "Content-Type": "application/octet-stream"},
            "multiValueHeaders": {"X-Multi": ["1", "2"]},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    body_length = len(event["body"] or "")
    if body_length > 100_000:  # keep the echo under Lambda's 6 MB response limit
        event = {**event, "body": None}
    body = {
        "event": event,
        "body_length": body_length,
        "env": {k: os.environ.get(k) for k in KEYS},
        "init_env": INIT_ENV,
        "helper": helper.NAME,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
"""

BOOM_APP = """\
def lambda_handler(event, context):
    if event["resource"] == "/v1/malformed":
        return {"statusCode": 200, "body": {"not": "a string"}}
    raise RuntimeError("boom: secret-value-123")
"""

QUEUE_APP = """\
def handler(event, context):
    return {"batchItemFailures": [], "records": len(event["Records"])}
"""


def write_project(root: Path, template: str = TEMPLATE) -> Path:
    """Write the fake template and function folders under ``root``; return the template path."""
    functions = {
        "echo": {"app.py": ECHO_APP, "helper.py": 'NAME = "echo-helper"\n'},
        "other": {"app.py": ECHO_APP, "helper.py": 'NAME = "other-helper"\n'},
        "boom": {"app.py": BOOM_APP},
        "broken": {"app.py": 'raise ImportError("broken at init")\n'},
        "queue": {"app.py": QUEUE_APP},
    }
    for name, files in functions.items():
        folder = root / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        for filename, text in files.items():
            (folder / filename).write_text(text)
    (root / "models").mkdir(exist_ok=True)
    path = root / "template.yaml"
    path.write_text(template)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def api(project: Path) -> Iterator[LocalApi]:
    with LocalApi(project, port=0, models_dir=project.parent / "models", region="us-east-1") as running:
        yield running


def get_json(api: LocalApi, path: str, **kwargs: object) -> dict:
    response = requests.get(f"{api.url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()


def raw_request(
    api: LocalApi, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request with http.client, so headers can repeat; returns status, header list, body."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


# -- routing ---------------------------------------------------------------------------
def test_literal_path_beats_path_parameter(api: LocalApi) -> None:
    # /v1/items/special is binary-encoded by the echo function's "special" branch; anything else echoes
    special = requests.get(f"{api.url}/v1/items/special", timeout=10)
    assert special.status_code == 201
    item = get_json(api, "/v1/items/42")
    assert item["event"]["resource"] == "/v1/items/{item_id}"
    assert item["event"]["pathParameters"] == {"item_id": "42"}


def test_specific_method_beats_any_and_any_catches_the_rest(api: LocalApi) -> None:
    assert api.routes.match("GET", "/v1/items/7").route.event_name == "Item"  # type: ignore[union-attr]
    assert api.routes.match("DELETE", "/v1/items/7").route.event_name == "ItemAny"  # type: ignore[union-attr]
    r = requests.delete(f"{api.url}/v1/items/7", timeout=10)
    assert r.status_code == 200
    assert r.json()["event"]["httpMethod"] == "DELETE"


def test_greedy_proxy_captures_the_rest_of_the_path(api: LocalApi) -> None:
    body = get_json(api, "/v1/other/a/b/c")
    assert body["event"]["resource"] == "/v1/other/{proxy+}"
    assert body["event"]["pathParameters"] == {"proxy": "a/b/c"}
    assert api.routes.match("GET", "/v1/other") is None  # {proxy+} needs at least one segment


def test_method_missing_on_matched_resource_is_a_missing_route(api: LocalApi) -> None:
    # API Gateway does not fall back to another resource: GET /v1/upload (POST only) is unknown
    r = requests.get(f"{api.url}/v1/upload", timeout=10)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_path_parameters_are_passed_as_sent(api: LocalApi) -> None:
    body = get_json(api, "/v1/items/a%20b")
    assert body["event"]["pathParameters"] == {"item_id": "a%20b"}
    assert body["event"]["path"] == "/v1/items/a%20b"


# -- the event -------------------------------------------------------------------------
def test_event_shape_headers_query_and_request_context(api: LocalApi) -> None:
    status, headers, raw = raw_request(
        api,
        "GET",
        "/v1/items/9?x=1&x=2&flag=&name=J%C3%BCrg",
        [("X-Multi", "first"), ("X-Multi", "second"), ("User-Agent", "unit-test")],
    )
    assert status == 200
    body = json.loads(raw)
    event = body["event"]
    assert event["httpMethod"] == "GET"
    assert event["headers"]["X-Multi"] == "second"  # last value wins
    assert event["multiValueHeaders"]["X-Multi"] == ["first", "second"]
    assert event["queryStringParameters"] == {"x": "2", "flag": "", "name": "Jürg"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "flag": [""], "name": ["Jürg"]}
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["resourcePath"] == "/v1/items/{item_id}"
    assert ctx["path"] == "/prod/v1/items/9"
    assert ctx["stage"] == "prod"
    assert ctx["httpMethod"] == "GET"
    assert ctx["accountId"] == "123456789012"
    assert ctx["apiId"] == "local"
    assert ctx["protocol"] == "HTTP/1.1"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "unit-test"
    assert isinstance(ctx["requestTimeEpoch"], int)
    assert uuid.UUID(ctx["requestId"]).version == 4
    assert body["context"]["aws_request_id"] == ctx["requestId"]
    assert dict(headers)["x-amzn-RequestId"] == ctx["requestId"]


def test_empty_query_and_no_path_parameters_are_none(api: LocalApi) -> None:
    event = get_json(api, "/v1/health")["event"]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None


def test_each_request_gets_a_fresh_request_id(api: LocalApi) -> None:
    ids = {get_json(api, "/v1/health")["event"]["requestContext"]["requestId"] for _ in range(3)}
    assert len(ids) == 3


def test_binary_media_type_body_is_base64_of_the_raw_bytes(api: LocalApi) -> None:
    payload = os.urandom(3000) + b"\x00\xff"
    r = requests.post(f"{api.url}/v1/upload", data=payload, headers={"Content-Type": "image/png"}, timeout=10)
    event = r.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_binary_media_type_ignores_parameters_and_case(api: LocalApi) -> None:
    payload = b"DICM" + bytes(range(200))
    r = requests.post(
        f"{api.url}/v1/upload",
        data=payload,
        headers={"Content-Type": "Application/DICOM; charset=binary"},
        timeout=10,
    )
    event = r.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_text_body_is_passed_as_text(api: LocalApi) -> None:
    doc = {"instances": [{"a": 1.5}], "note": "ünïcode"}
    r = requests.post(f"{api.url}/v1/upload", json=doc, timeout=10)
    event = r.json()["event"]
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == doc


def test_non_utf8_text_body_is_base64_and_flagged(api: LocalApi) -> None:
    payload = b"caf\xe9 \xff"
    r = requests.post(f"{api.url}/v1/upload", data=payload, headers={"Content-Type": "text/plain"}, timeout=10)
    event = r.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_chunked_body_is_read(api: LocalApi) -> None:
    parts = [b'{"a": ', b"1}"]
    r = requests.post(
        f"{api.url}/v1/upload", data=iter(parts), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert r.status_code == 200
    assert json.loads(r.json()["event"]["body"]) == {"a": 1}


# -- the response ----------------------------------------------------------------------
def test_base64_response_is_decoded_and_multi_value_headers_win(api: LocalApi) -> None:
    status, headers, body = raw_request(api, "GET", "/v1/items/special", [])
    assert status == 201
    assert body == bytes(range(256))
    assert [v for k, v in headers if k == "X-Multi"] == ["1", "2"]
    assert [v for k, v in headers if k == "X-One"] == ["a"]
    assert dict(headers)["Content-Length"] == "256"


def test_head_answers_headers_without_body(api: LocalApi) -> None:
    r = requests.head(f"{api.url}/v1/items/3", timeout=10)
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["Content-Length"]) > 0


# -- errors ----------------------------------------------------------------------------
def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc = response.json()
    assert doc["status"] == status
    assert {"type", "title", "detail", "request_id"} <= set(doc)
    assert doc["request_id"] == response.headers["x-amzn-RequestId"]
    return doc


def test_unknown_route_renders_the_templates_gateway_response(api: LocalApi) -> None:
    doc = assert_problem(requests.get(f"{api.url}/v1/nothing?secret=1", timeout=10), 404)
    assert doc["detail"] == "no route"  # the template's text, $context.requestId substituted
    assert uuid.UUID(doc["request_id"])


def test_unknown_route_without_gateway_responses_is_a_404_problem(tmp_path: Path) -> None:
    lines = TEMPLATE.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "GatewayResponses:" in line)
    end = next(i for i, line in enumerate(lines) if "EchoFunction:" in line)
    path = write_project(tmp_path, "".join(lines[:start] + lines[end:]))
    with LocalApi(path, port=0, eager=False) as local:
        doc = assert_problem(requests.get(f"{local.url}/nope", timeout=10), 404)
    assert doc["title"] == "Not Found"


def test_handler_exception_is_502_and_logged_not_returned(api: LocalApi, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="local"):
        r = requests.get(f"{api.url}/v1/boom", timeout=10)
    doc = assert_problem(r, 502)
    assert doc["title"] == "Bad Gateway"
    assert doc["detail"] == "the function raised; see the server log"
    assert "secret-value-123" not in r.text
    assert "RuntimeError: boom: secret-value-123" in caplog.text
    assert doc["request_id"] in caplog.text


def test_malformed_proxy_response_is_502(api: LocalApi) -> None:
    doc = assert_problem(requests.get(f"{api.url}/v1/malformed", timeout=10), 502)
    assert "malformed" in doc["detail"]


def test_init_failure_is_502_and_init_is_retried(api: LocalApi) -> None:
    broken = api.functions["BrokenFunction"]
    before = broken.init_count
    assert isinstance(broken.init_error, ImportError)
    assert_problem(requests.get(f"{api.url}/v1/broken", timeout=10), 502)
    assert_problem(requests.get(f"{api.url}/v1/broken", timeout=10), 502)
    assert broken.init_count == before + 2


def test_strict_start_raises_on_init_failure(project: Path) -> None:
    local = LocalApi(project, port=0, strict=True)
    with pytest.raises(Exception, match="broken at init"):
        local.start()
    local.stop()


def test_body_over_the_lambda_limit_after_base64_is_413(api: LocalApi) -> None:
    raw_limit = LAMBDA_SYNC_PAYLOAD_LIMIT // 4 * 3  # base64 of this many bytes is exactly the limit
    calls = api.functions["EchoFunction"].invocations
    r = requests.post(
        f"{api.url}/v1/upload",
        data=b"\x00" * (raw_limit + 1),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    doc = assert_problem(r, 413)
    assert f"{LAMBDA_SYNC_PAYLOAD_LIMIT:,}" in doc["detail"]
    assert api.functions["EchoFunction"].invocations == calls  # never reached the function
    ok = requests.post(
        f"{api.url}/v1/upload", data=b"\x00" * raw_limit, headers={"Content-Type": "image/png"}, timeout=30
    )
    assert ok.status_code == 200
    assert ok.json()["body_length"] == LAMBDA_SYNC_PAYLOAD_LIMIT


def test_text_body_over_the_limit_is_413(api: LocalApi) -> None:
    r = requests.post(
        f"{api.url}/v1/upload",
        data=b"a" * (LAMBDA_SYNC_PAYLOAD_LIMIT + 1),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert_problem(r, 413)


def test_chunked_body_over_the_limit_is_413(api: LocalApi) -> None:
    chunk = b"b" * (1024 * 1024)
    r = requests.post(
        f"{api.url}/v1/upload", data=iter([chunk] * 7), headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert_problem(r, 413)


def test_oversized_body_is_refused_before_it_is_sent(api: LocalApi) -> None:
    # With Expect: 100-continue the runner answers 413 from Content-Length alone; no body is ever sent.
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 7000000\r\nExpect: 100-continue\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 413")


# -- functions: load once, isolation, environment ---------------------------------------
def test_module_is_loaded_once_across_many_requests(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    imports_log = tmp_path / "functions" / "echo" / "imports.log"
    with LocalApi(path, port=0) as local:
        assert imports_log.read_text().splitlines() == ["imported"]  # eager: at start, like Lambda init
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda i: requests.get(f"{local.url}/v1/items/{i}", timeout=10).status_code, range(40))
            )
        assert statuses == [200] * 40
        assert imports_log.read_text().splitlines() == ["imported"]
        assert local.functions["EchoFunction"].init_count == 1
        assert local.functions["EchoFunction"].invocations == 40


def test_lazy_runner_loads_on_first_request(tmp_path: Path) -> None:
    path = write_project(tmp_path)
    imports_log = tmp_path / "functions" / "echo" / "imports.log"
    with LocalApi(path, port=0, eager=False) as local:
        assert not imports_log.exists()
        get_json(local, "/v1/items/1")
        get_json(local, "/v1/items/2")
        assert imports_log.read_text().splitlines() == ["imported"]


def test_same_named_sibling_modules_stay_per_function(api: LocalApi) -> None:
    assert get_json(api, "/v1/items/1")["helper"] == "echo-helper"
    assert get_json(api, "/v1/other/x")["helper"] == "other-helper"
    assert "helper" not in sys.modules


def test_environment_is_per_function_at_init_and_invoke(api: LocalApi, project: Path) -> None:
    models_dir = str((project.parent / "models").resolve())
    for _ in range(2):  # interleave the two functions
        echo = get_json(api, "/v1/items/1")
        other = get_json(api, "/v1/other/x")
    for seen in (echo["env"], echo["init_env"]):
        assert seen["SHARED"] == "from-globals"
        assert seen["OVERRIDDEN"] == "echo"
        assert seen["BUCKET"] == "demo-bucket-us-east-1"
        assert seen["FLAG"] == "yes"
        assert seen["ONLY_OTHER"] is None
        assert seen["MEDSERVE_MODELS_DIR"] == models_dir
        assert seen["POWERTOOLS_SERVICE_NAME"] == "echo"
        assert seen["POWERTOOLS_METRICS_NAMESPACE"] == "MedServe"
    for seen in (other["env"], other["init_env"]):
        assert seen["OVERRIDDEN"] == "globals"
        assert seen["ONLY_OTHER"] == "1"
        assert seen["BUCKET"] is None
        assert seen["POWERTOOLS_SERVICE_NAME"] == "other"


def test_lambda_context(api: LocalApi) -> None:
    ctx = get_json(api, "/v1/items/1")["context"]
    name = api.functions["EchoFunction"].spec.function_name
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert ctx["memory_limit_in_mb"] == "512"  # a string, as in the Lambda Python runtime
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in ctx["log_stream_name"]
    assert 0 < ctx["remaining_ms"] <= 7000


def test_non_api_function_can_be_invoked_directly(api: LocalApi) -> None:
    queue = api.functions["QueueFunction"]
    assert not queue.spec.routes
    assert queue.spec.events_of_type("SQS")["Incoming"]["BatchSize"] == 10
    assert queue.invoke({"Records": [{}, {}]}) == {"batchItemFailures": [], "records": 2}


def test_stop_restores_the_environment(project: Path) -> None:
    key = f"LOCAL_TEST_{uuid.uuid4().hex}"
    with LocalApi(project, port=0, env={key: "set"}) as local:
        assert get_json(local, "/v1/health")["event"]["httpMethod"] == "GET"
        assert os.environ.get(key) == "set"
    assert key not in os.environ


# -- python -m local --------------------------------------------------------------------
def test_main_serves_prints_the_banner_and_stops_on_sigterm(project: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "MEDSERVE_LOCAL_EXTRAS": "none", "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "out.log"
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local", "--template", str(project)],
            cwd=REPO_ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, out.read_text()
            try:
                r = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert f"http://127.0.0.1:{port}" in text
    assert "no auth locally" in text
    assert "Ctrl-C to stop" in text
    assert "INIT FAILED: BrokenFunction" in text
    assert "/v1/items/{item_id}" in text
    assert "GET /v1/health 200" in text  # the access log line: method, route, status


def test_access_log_has_no_query_values(api: LocalApi, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="local"):
        get_json(api, "/v1/items/5?patient=Jane-Doe")
        # The server thread writes its access line after the response is sent: wait for it.
        deadline = time.monotonic() + 5
        while "GET /v1/items/{item_id} 200" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "GET /v1/items/{item_id} 200" in caplog.text
    assert "Jane-Doe" not in caplog.text
