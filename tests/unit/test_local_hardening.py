"""Issue 9 finding 5 (local runner and handlers): methods, HEAD, slow bodies.

Uses the fake project of ``test_local_runner`` (echo/boom functions written to tmp).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local import LocalApi
from tests.unit.test_local_runner import TEMPLATE, raw_request, write_project

METHOD = "ZQXJMETHOD"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def api(project: Path) -> Iterator[LocalApi]:
    with LocalApi(
        project, port=0, models_dir=project.parent / "models", region="us-east-1", read_timeout=0.5
    ) as running:
        yield running


@pytest.mark.parametrize("method", [METHOD, "TRACE", "CONNECT", "PROPFIND"])
def test_unknown_methods_are_a_problem_that_does_not_echo_the_method(api: LocalApi, method: str) -> None:
    status, headers, body = raw_request(api, method, "/v1/health", [])
    assert status in (405, 501), body
    assert dict((k.lower(), v) for k, v in headers)["content-type"].startswith("application/problem+json")
    doc = json.loads(body)
    assert doc["status"] == status
    assert method not in body.decode()


def test_a_malformed_request_line_is_a_problem_that_echoes_nothing(api: LocalApi) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(f"GET /v1/health HTTP/9.{METHOD}\r\n\r\n".encode())
        data = sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head
    assert METHOD.encode() not in data


def test_a_body_that_never_arrives_times_out(api: LocalApi) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nab"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert time.monotonic() - started < 5, "the connection was held"
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"application/problem+json" in data


def test_head_on_a_get_only_route_is_answered_like_get_without_body(api: LocalApi) -> None:
    got = requests.get(f"{api.url}/v1/items/special", timeout=10)
    head = requests.head(f"{api.url}/v1/items/special", timeout=10)
    assert 200 <= got.status_code < 300
    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


def test_a_path_without_route_is_not_echoed(tmp_path: Path) -> None:
    # A template without gateway responses: the runner's own 404 answers.
    lines = TEMPLATE.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if "GatewayResponses:" in line)
    end = next(i for i, line in enumerate(lines) if "EchoFunction:" in line)
    path = write_project(tmp_path, "".join(lines[:start] + lines[end:]))
    with LocalApi(path, port=0, eager=False) as local:
        r = requests.get(f"{local.url}/v1/nowhere/{METHOD}", timeout=10)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert METHOD not in r.text
