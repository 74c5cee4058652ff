"""Lambda SnapStart runtime hooks: warm everything before the snapshot, refresh after restore.

Each handler module calls :func:`install` once, at import (Lambda init)::

    SNAPSTART = snapstart.install(app, REGISTRY, task="risk")

Before the snapshot (:meth:`Hooks.before_snapshot`) every session is open (the registry
opened them at import) and every model answers its stored golden requests
(``<model>/<version>/golden.json``) once, through the function's own resolver, so the
code paths, allocator pools and ONNX Runtime kernels of a real request are in the
snapshot and the first request after restore costs what a warm one does. Warm-up
requests publish no metric and no request log line (:func:`warming` tells other modules,
e.g. an audit trail, to stay quiet), and a golden request that does not answer as
recorded fails the hook: a version that cannot answer its golden requests is not published.

After restore (:meth:`Hooks.after_restore`) whatever the snapshot froze is made unique
again: ``random`` and numpy's global generator are reseeded from the OS, every callback
registered with :func:`on_restore` runs (e.g. the batch function drops its boto3 client,
which holds credentials and connections), and the restore time is logged.

On Lambda the hooks are registered with ``snapshot_restore_py`` (shipped in the runtime
layer, and part of the managed runtime) only when the function initialises for a
snapshot (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``). Elsewhere nothing is
registered; the local runner finds the module's ``SNAPSTART`` and calls the same two
hooks in the same order (before-snapshot at load, after-restore before the first request).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from medserve.golden import golden_body_bytes, golden_event, golden_requests

try:  # part of Lambda's python3.12 runtime and of the RuntimeLayer; optional elsewhere
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # pragma: no cover - exercised where the package is absent
    register_after_restore = register_before_snapshot = None

WARMUP_REQUEST_PREFIX = "snapstart-warmup-"

_warming = False
_restore_callbacks: list[Callable[[], Any]] = []


def warming() -> bool:
    """True while a before-snapshot warm-up request is running (skip audit trails, metrics)."""
    return _warming


def on_restore(callback: Callable[[], Any]) -> Callable[[], Any]:
    """Register ``callback`` to run after every restore (usable as a decorator).

    For anything that holds time, credentials, connections or randomness created at
    init: e.g. ``snapstart.on_restore(storage.reset_client)``. Registering the same
    callable twice runs it once.
    """
    if callback not in _restore_callbacks:
        _restore_callbacks.append(callback)
    return callback


class _WarmupContext:
    """The Lambda context attributes Powertools reads, for warm-up requests."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "medserve")
    function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1536") or 1536)
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:medserve"
    log_group_name = "snapstart"
    log_stream_name = "snapstart"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


class WarmupError(RuntimeError):
    """A golden request did not answer with its recorded status before the snapshot."""


@dataclass
class Hooks:
    """The two SnapStart hooks of one function, and what they did (for tests and logs).

    Parameters
    ----------
    app
        The function's API resolver (``app.resolve(event, context)``), or ``None``.
    handler
        The function's Lambda handler: when given, warm-up requests go through it (the
        whole path of a real request: logger and metrics decorators included) instead of
        ``app.resolve``; their log lines and metrics are dropped and Powertools' cold-start
        flags are set back, so the first real request still reports the cold start.
    registry
        The function's registry; its entries' golden requests are the warm-up.
    task
        The task whose models this function serves (``None``: every task).
    warm_paths
        Extra ``GET`` paths to answer once before the snapshot (e.g. ``/openapi.json``).
    warm
        Extra warm-up work, called once per model entry (e.g. the batch path).
    prepare
        Callables run once before the snapshot (e.g. create the S3 client, so botocore's
        service models are loaded in the snapshot; pair it with an :func:`on_restore` reset).
    """

    app: Any = None
    handler: Callable[[dict[str, Any], Any], Any] | None = None
    registry: Any = None
    task: str | None = None
    warm_paths: tuple[str, ...] = ()
    warm: Callable[[Any, list[dict[str, Any]]], Any] | None = None
    prepare: tuple[Callable[[], Any], ...] = ()
    calls: list[str] = field(default_factory=list)
    warmup_requests: int = 0
    warmup_models: int = 0
    snapshot_ms: float = 0.0
    restore_ms: float = 0.0

    def entries(self) -> list[Any]:
        """The model versions this function serves (a pinned candidate is warm too)."""
        if self.registry is None:
            return []
        return list(self.registry.all_entries(self.task))  # every served version: live and candidates

    def before_snapshot(self) -> None:
        """Open every session and answer every golden request once (see the module docstring)."""
        global _warming
        started = time.perf_counter()
        self.calls.append("before_snapshot")
        _warming = True
        try:
            with _quiet():
                for entry in self.entries():
                    if getattr(entry, "session", None) is None and self.task is not None:
                        entry.load_session()
                    requests = golden_requests(entry)
                    if self.app is not None or self.handler is not None:
                        for request in requests:
                            self._answer(request)
                    if self.warm is not None:
                        self.warm(entry, requests)
                    self.warmup_models += 1
                for fn in self.prepare:
                    fn()
                for path in self.warm_paths:
                    self._answer({"name": path, "method": "GET", "path": path, "expect": {"status": 200}})
        finally:
            _warming = False
        self.snapshot_ms = round((time.perf_counter() - started) * 1000, 2)
        _logger().info(
            "snapstart before-snapshot done",
            extra={
                "warmup_models": self.warmup_models,
                "warmup_requests": self.warmup_requests,
                "duration_ms": self.snapshot_ms,
            },
        )

    def after_restore(self) -> None:
        """Reseed randomness, run the :func:`on_restore` callbacks, log how long it took."""
        started = time.perf_counter()
        self.calls.append("after_restore")
        reseed()
        for callback in list(_restore_callbacks):
            callback()
        self.restore_ms = round((time.perf_counter() - started) * 1000, 3)
        _logger().info(
            "snapstart after-restore done",
            extra={"restore_ms": self.restore_ms, "callbacks": len(_restore_callbacks)},
        )

    def _answer(self, request: dict[str, Any]) -> None:
        request_id = f"{WARMUP_REQUEST_PREFIX}{self.warmup_requests}"
        event, context = golden_event(request, request_id=request_id), _WarmupContext(request_id)
        response = self.handler(event, context) if self.handler is not None else self.app.resolve(event, context)
        self.warmup_requests += 1
        expected = int((request.get("expect") or {}).get("status", 200))
        if response.get("statusCode") != expected:
            # names only our own golden request, never a caller's value
            raise WarmupError(
                f"golden request {request.get('name')!r} ({request.get('path')}) answered "
                f"{response.get('statusCode')}, recorded {expected}"
            )


def batch_warmup(entry: Any, requests: list[dict[str, Any]]) -> None:
    """The batch function's warm-up: each golden request as a batch object, through the batch path.

    Risk instances become JSON Lines rows, a vitals body one JSON Lines sequence, an image
    one image object; then :func:`medserve.batch.worker.process` runs them as an S3 object would.
    A row-level problem is not a failure here (the API golden requests are the gate).
    """
    from medserve.batch import worker

    for request in requests:
        body = request.get("body")
        if "body_base64" in request:
            data, name = golden_body_bytes(request), "golden.bin"
        elif isinstance(body, dict) and isinstance(body.get("instances"), list):
            data, name = "\n".join(json.dumps(i) for i in body["instances"]).encode(), "golden.jsonl"
        elif isinstance(body, dict) and "observations" in body:
            data, name = json.dumps({"observations": body["observations"]}).encode(), "golden.jsonl"
        else:
            continue
        worker.process(entry, data, name, max_rows=10_000)


def reseed() -> None:
    """Fresh OS entropy for ``random``, numpy's global generator (if imported) and temp-file names."""
    random.seed()
    # numpy.random is imported lazily (numpy 2): if nothing imported it before the snapshot,
    # it seeds itself from the OS when first imported, and importing it here would cost ~5 ms.
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None  # type: ignore[attr-defined]  # rebuilt, from fresh entropy, on next use


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No log record, no printed metric, and Powertools' state as it was before, around warm-up."""
    from medserve import audit

    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), audit.suppressed():  # EMF metrics print on flush
            yield
    finally:
        logging.disable(previous)
        _reset_observability()


def _reset_observability() -> None:
    """Drop warm-up metrics and logger keys; the first real request is still the cold start."""
    api = sys.modules.get("medserve.api")
    if api is not None:
        api.metrics.clear_metrics()
        api.logger.remove_keys(["model_id", "model_version"])
    metrics_cold_start = sys.modules.get("aws_lambda_powertools.metrics.provider.cold_start")
    if metrics_cold_start is not None:
        metrics_cold_start.reset_cold_start_flag()
    powertools_logger = sys.modules.get("aws_lambda_powertools.logging.logger")
    if powertools_logger is not None and hasattr(powertools_logger, "is_cold_start"):
        setattr(powertools_logger, "is_cold_start", True)  # noqa: B010 (module flag inject_lambda_context flips)


@functools.cache
def _logger() -> Any:
    """One Powertools logger, built at the first hook (before the snapshot, so not after restore)."""
    from aws_lambda_powertools import Logger

    return Logger(log_uncaught_exceptions=False)


def install(
    app: Any = None,
    registry: Any = None,
    task: str | None = None,
    *,
    handler: Callable[[dict[str, Any], Any], Any] | None = None,
    warm_paths: Iterable[str] = (),
    warm: Callable[[Any, list[dict[str, Any]]], Any] | None = None,
    prepare: Iterable[Callable[[], Any]] = (),
) -> Hooks:
    """Build this function's hooks and, on a SnapStart init, register them with Lambda.

    Returns
    -------
    Hooks
        Keep it as the handler module's ``SNAPSTART`` (the local runner looks for it).
    """
    hooks = Hooks(
        app=app,
        handler=handler,
        registry=registry,
        task=task,
        warm_paths=tuple(warm_paths),
        warm=warm,
        prepare=tuple(prepare),
    )
    if register_before_snapshot is not None and os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
        register_before_snapshot(hooks.before_snapshot)
        register_after_restore(hooks.after_restore)
    return hooks
