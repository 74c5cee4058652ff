"""The client's SigV4 path (botocore's signer, a pinned clock) and its error mapping, offline.

Given AWS's published SigV4 test-suite case "get-vanilla", when the client's signer signs it,
then the Authorization header is the published one, to the byte. A small local HTTP server
plays API Gateway for what goes over the wire.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from medserve_client import (
    AccessDeniedError,
    Client,
    EndpointUnreachableError,
    NoCredentialsError,
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
)
from medserve_client.auth import Signer, region_from_host
from medserve_client.errors import LAMBDA_SYNC_PAYLOAD_LIMIT
from tests.e2e.conftest import _free_port

# aws-sig-v4-test-suite/get-vanilla (AWS General Reference, "Signature Version 4 test suite").
VANILLA_CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
VANILLA_TIME = dt.datetime(2015, 8, 30, 12, 36, 0)
VANILLA_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    "SignedHeaders=host;x-amz-date, "
    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
)


def test_get_vanilla_gives_the_published_authorization_header() -> None:
    signer = Signer("us-east-1", "service", credentials=VANILLA_CREDENTIALS, clock=lambda: VANILLA_TIME)
    headers = signer.sign("GET", "https://example.amazonaws.com/", {}, None)
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == VANILLA_AUTHORIZATION


def test_another_second_gives_another_signature() -> None:
    later = VANILLA_TIME + dt.timedelta(seconds=1)
    signer = Signer("us-east-1", "service", credentials=VANILLA_CREDENTIALS, clock=lambda: later)
    assert signer.sign("GET", "https://example.amazonaws.com/", {}, None)["Authorization"] != VANILLA_AUTHORIZATION


def test_execute_api_hosts_are_signed_for_their_region() -> None:
    assert region_from_host("abc123defg.execute-api.eu-west-1.amazonaws.com") == "eu-west-1"
    assert region_from_host("127.0.0.1") is None
    signed = Client("https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod")
    assert signed.signer is not None and signed.signer.region == "eu-west-1" and signed.signer.service == "execute-api"
    assert Client("http://127.0.0.1:3000").signer is None


def test_no_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = Client("https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod")
    with pytest.raises(NoCredentialsError) as info:
        client.models()
    assert "no AWS credentials" in str(info.value) and "--profile" in info.value.hint


class _Recorder(BaseHTTPRequestHandler):
    """Answers what the test queued; records each request (method, path, headers, body)."""

    answers: list[tuple[int, str, bytes]] = []
    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
        status, ctype, payload = type(self).answers.pop(0)
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[str]:
    _Recorder.answers, _Recorder.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _ok(doc: dict[str, Any]) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(doc).encode()


def test_signed_request_on_the_wire_verifies(fake_api: str) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
    signer = Signer("eu-west-1", credentials=creds, clock=lambda: VANILLA_TIME)
    _Recorder.answers.append(_ok({"predictions": []}))
    Client(fake_api, signer=signer).predict("breast-cancer", [{"mean_radius": 1.0}], task="risk", version="1.2.3")
    seen = _Recorder.seen[0]
    assert seen["path"] == "/v1/risk/breast-cancer/predict?version=1.2.3"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-amz-security-token"] == "session-token"
    auth = headers["authorization"]
    scope = "Credential=AKIDEXAMPLE/20150830/eu-west-1/execute-api/aws4_request"
    assert scope in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "content-type", "x-amz-security-token"} <= set(signed)
    # Recompute the signature from what arrived, as API Gateway would.
    received = AWSRequest(
        method="POST", url=fake_api + seen["path"], data=seen["body"], headers={h: headers[h] for h in signed}
    )
    received.context["timestamp"] = headers["x-amz-date"]
    verifier = SigV4Auth(creds, "execute-api", "eu-west-1")
    expected = verifier.signature(verifier.string_to_sign(received, verifier.canonical_request(received)), received)
    assert auth.endswith(f"Signature={expected}")


def test_iam_403_is_access_denied_with_a_hint(fake_api: str) -> None:
    _Recorder.answers.append((403, "application/json", b'{"message":"Missing Authentication Token"}'))
    with pytest.raises(AccessDeniedError) as info:
        Client(fake_api).models()
    assert "Missing Authentication Token" in str(info.value) and "not signed" in info.value.hint


def test_problem_json_is_raised_with_the_document(fake_api: str) -> None:
    problem = {
        "type": "x",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "1 invalid field",
        "errors": [{"field": "instances[0].age", "message": "must be between 18 and 110 years"}],
    }
    _Recorder.answers.append((422, "application/problem+json", json.dumps(problem).encode()))
    _Recorder.answers.append((404, "application/problem+json", json.dumps({**problem, "status": 404}).encode()))
    client = Client(fake_api)
    with pytest.raises(ProblemError) as info:
        client.predict("diabetes-progression", [{"age": 1}], task="risk")
    assert info.value.problem == problem and info.value.status == 422
    assert info.value.field_errors == problem["errors"]
    with pytest.raises(NotFoundError):
        client.model("nope")


def test_too_large_is_refused_before_sending(fake_api: str) -> None:
    body = b"\x89PNG\r\n\x1a\n" + bytes(LAMBDA_SYNC_PAYLOAD_LIMIT * 3 // 4)
    with pytest.raises(PayloadTooLargeError) as info:
        Client(fake_api).predict("chest-xray", body, task="imaging")
    assert "medserve batch" in info.value.hint
    assert _Recorder.seen == []


def test_endpoint_down_is_unreachable() -> None:
    with pytest.raises(EndpointUnreachableError) as info:
        Client(f"http://127.0.0.1:{_free_port()}", timeout=5).health()
    assert "make run" in info.value.hint
