"""Fixtures for end-to-end tests: the real local runner (``python -m local``) as a subprocess.

``server`` is the base URL (``http://127.0.0.1:<free port>``, routes start with ``/v1``);
``http`` is a ``requests.Session``. The runner serves the real ``template.yaml`` with the
real handlers and ``layers/models``; its output is kept in a log file and shown when it
fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, limit: int = 6000) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text[-limit:]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m local`` on a free port, wait for ``GET /v1/health`` to answer, yield the URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("local-runner") / "runner.log"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the local runner exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                # Any HTTP answer means the port is bound, which happens after every function's init.
                requests.get(f"{url}/v1/health", timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the local runner did not answer within {STARTUP_TIMEOUT_S:.0f} s:\n"
                        f"{_tail(log_path)}"
                    )
                time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """A requests session for the e2e tests."""
    with requests.Session() as session:
        yield session
