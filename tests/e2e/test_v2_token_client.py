"""The token client examples of docs/deploy.md ("Protocol clients without SigV4") run as written.

Given the local runner behind a small stand-in for the deployed stage (everything under
``/prod``, a request without the expected ``Authorization`` value answered 401 as API
Gateway's Cognito authorizer would, the rest forwarded with the header removed), when the
documented curl and tritonclient examples run against it with ``API`` and ``TOKEN`` set,
then every request they make carries the token under the stage path, and the answers are
the model's (the numbers the document prints). Only the scheme differs from the document
(plain HTTP here), and the token is not checked cryptographically: that is API Gateway's
part, configured by the template (tests/template/test_template_v2_auth.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from samtranslator.yaml_helper import yaml_parse
from tritonclient.utils import InferenceServerException

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "deploy.md"
TEMPLATE = REPO_ROOT / "template.yaml"
MARKER = "<!-- run by tests/e2e/test_v2_token_client.py"
# Shaped like a JWT (header.payload.signature), new each run; the stand-in only compares it.
TOKEN = ".".join(secrets.token_urlsafe(24) for _ in range(3))
STAGE = "/prod"
HOP_BY_HOP = {"host", "authorization", "connection", "keep-alive", "transfer-encoding", "content-length"}


def documented_block(language: str) -> str:
    """The fenced ``language`` block that follows the test marker in docs/deploy.md."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(re.escape(MARKER) + r"[^\n]*\n```(\w+)\n(.*?)\n```", text, flags=re.DOTALL)
    found = [code for lang, code in blocks if lang == language]
    assert len(found) == 1, f"one marked {language} block expected in {DOC.name}, found {len(found)}"
    return found[0]


def unauthorized_body() -> bytes:
    """template.yaml's UNAUTHORIZED gateway response, as API Gateway renders it for a bad token."""
    api = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))["Resources"]["MedServeApi"]["Properties"]
    body = api["GatewayResponses"]["UNAUTHORIZED"]["ResponseTemplates"]["application/json"]
    body = body.replace("$context.error.messageString", json.dumps("Unauthorized"))
    body = body.replace("$context.requestId", "c0ffee00-0000-4000-8000-000000000000")
    return json.dumps(json.loads(body)).encode()


class Stage(ThreadingHTTPServer):
    """A stand-in for the API Gateway stage with V2Auth=COGNITO, in front of the local runner."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), StageHandler)
        self.upstream = upstream
        self.seen: list[tuple[str, str, bool]] = []  # (method, path, carried the token)
        self.lock = threading.Lock()


class StageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Stage

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: pytest shows failures."""

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorized = self.headers.get("Authorization") == TOKEN
        with self.server.lock:
            self.server.seen.append((self.command, self.path, authorized))
        if not self.path.startswith(STAGE + "/"):
            problem = {"type": "about:blank", "title": "Not Found", "status": 404, "request_id": "local"}
            self._answer(404, {"Content-Type": "application/problem+json"}, json.dumps(problem).encode())
            return
        if not authorized:
            self._answer(401, {"Content-Type": "application/problem+json"}, unauthorized_body())
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = requests.request(
            self.command,
            self.server.upstream + self.path.removeprefix(STAGE),
            headers=headers,
            data=body,
            timeout=60,
        )
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        self._answer(upstream.status_code, kept, upstream.content)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


@pytest.fixture(scope="module")
def stage(server: str) -> Iterator[Stage]:
    proxy = Stage(server)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def _api(stage: Stage) -> str:
    port = stage.server_address[1]
    return f"127.0.0.1:{port}{STAGE}"


def _documented_value() -> np.ndarray:
    printed = re.search(r'print\(result\.as_numpy\("value"\)\)\s*# (\[\[.*\]\])', documented_block("python"))
    assert printed, "the python example prints the answer it expects"
    return np.array(json.loads(printed.group(1)), dtype=np.float32)


def test_the_documented_tritonclient_example_sends_the_token_on_every_call(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = documented_block("python")
    assert code.count("ssl=True") == 1
    monkeypatch.setenv("API", "https://" + _api(stage))
    monkeypatch.setenv("TOKEN", TOKEN)
    before = len(stage.seen)

    namespace: dict[str, Any] = {}
    with redirect_stdout(io.StringIO()) as out:
        exec(compile(code.replace("ssl=True", "ssl=False"), str(DOC), "exec"), namespace)  # noqa: S102

    calls = stage.seen[before:]
    assert len(calls) == 3  # ready, metadata, infer
    assert all(path.startswith(f"{STAGE}/v2/") and authorized for _, path, authorized in calls), calls
    assert "'name': 'features'" in out.getvalue()
    np.testing.assert_allclose(namespace["result"].as_numpy("value"), _documented_value(), rtol=1e-5)


def test_tritonclient_without_the_token_gets_the_401_problem(stage: Stage) -> None:
    client = httpclient.InferenceServerClient(_api(stage))
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_metadata("diabetes-progression", headers={"Authorization": "not-the-token"})
    finally:
        client.close()

    # tritonclient shows the problem's "error" member as the exception's message.
    assert refused.value.status() == "401"
    assert refused.value.message() == json.loads(unauthorized_body())["error"]


def test_the_documented_curl_example_sends_the_token_and_gets_the_answer(stage: Stage) -> None:
    env = {**os.environ, "API": f"http://{_api(stage)}", "TOKEN": TOKEN}
    before = len(stage.seen)

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_block("bash")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    calls = stage.seen[before:]
    assert len(calls) == 3
    assert all(path.startswith(f"{STAGE}/v2/") and authorized for _, path, authorized in calls), calls
    status, answers = done.stdout.split("\n", 1)
    assert status == "200"
    metadata, end = json.JSONDecoder().raw_decode(answers)
    inference, _ = json.JSONDecoder().raw_decode(answers[end:].lstrip())
    assert metadata["name"] == "diabetes-progression"
    (output,) = inference["outputs"]
    np.testing.assert_allclose(np.array(output["data"], dtype=np.float32), _documented_value().ravel(), rtol=1e-5)
