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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def local_runner(log_dir: Path, env: dict[str, str], ready: Callable[[Path], bool], what: str) -> Iterator[None]:
    """Run ``python -m local`` with ``env`` until the block ends; wait until ``ready(log)``.

    Fails the test with the runner's log when it exits early or is not ready within
    ``STARTUP_TIMEOUT_S``; always stops it (SIGTERM, then kill) afterwards.
    """
    log_path = log_dir / "runner.log"
    full_env = {**os.environ, "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local"], cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready(log_path):
            if proc.poll() is not None:
                pytest.fail(f"the local runner exited with {proc.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {STARTUP_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m local`` on a free port, wait for ``GET /v1/health`` to answer, yield the URL.

    The S3 extra starts too (as with ``make run``), on a free port so a running
    ``make run`` on 4566 does not clash.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"

    def answers(_: Path) -> bool:
        try:
            # Any HTTP answer means the port is bound, which happens after every function's init.
            requests.get(f"{url}/v1/health", timeout=5)
        except requests.ConnectionError:
            return False
        return True

    env = {"PORT": str(port), "S3_PORT": str(_free_port())}
    with local_runner(tmp_path_factory.mktemp("local-runner"), env, answers, "answer on /v1/health"):
        yield url


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """A requests session for the e2e tests."""
    with requests.Session() as session:
        yield session
