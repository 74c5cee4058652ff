"""Host Lambda functions in this process: load each once, in isolation, and invoke it.

Every handler file is called ``app.py``, so each is imported under its own module
name (``medserve_fn_<LogicalId>``) with its folder on ``sys.path`` only while it is
imported; sibling modules it imports from its folder are then dropped from
``sys.modules`` so another function's same-named module is not mistaken for it.
(A handler that imports from its own folder lazily, inside a request, is not
supported: put such code in the ``medserve`` layer.)

Environment variables are process-global. A function's variables are set before
its import (Lambda init) and again before every invocation, under one lock; keys
set for another function and absent from this one are restored to the runner's
own value. Values read at import time are therefore exact; values read during a
request are exact.

SnapStart: a handler module that keeps its runtime hooks as ``SNAPSTART`` (see
:mod:`medserve.snapstart`) gets them called as Lambda calls them for a published
version: ``before_snapshot()`` right after the import (still init: a failure is an init
failure), ``after_restore()`` once, just before the first invocation.

One lock serialises every invocation, of every function: a Lambda
execution environment handles one request at a time, and here the functions also
share the process's library singletons (the ``medserve`` Powertools logger and
metrics), which concurrent invocations of two functions would otherwise corrupt
(one clearing the other's correlation id or flushing its metrics).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local.cfn import ACCOUNT_ID
from local.template import FunctionSpec

log = logging.getLogger("local")

_ENV_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()
_INVOKE_LOCK = threading.RLock()
"""Shared by every function: one invocation at a time in this process (see above)."""
_BASE_ENV: dict[str, str | None] = {}
"""The runner's own value (``None``: unset) of every key a function has set."""


def apply_env(env: Mapping[str, str]) -> None:
    """Make ``os.environ`` hold ``env``, undoing keys another function set that ``env`` lacks."""
    with _ENV_LOCK:
        for key in list(_BASE_ENV):
            if key not in env:
                _restore(key)
        for key, value in env.items():
            if key not in _BASE_ENV:
                _BASE_ENV[key] = os.environ.get(key)
            os.environ[key] = value


def restore_env() -> None:
    """Give every key a function set back its value from before the runner touched it."""
    with _ENV_LOCK:
        for key in list(_BASE_ENV):
            _restore(key)


def _restore(key: str) -> None:
    original = _BASE_ENV.pop(key)
    if original is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = original


@dataclass
class LambdaContext:
    """The context object a Python Lambda handler receives (same attribute names and types)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: str
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_monotonic: float
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout (never negative)."""
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


class FunctionInitError(RuntimeError):
    """The function's module failed to import (Lambda's init phase); the cause is chained."""


@dataclass
class FunctionRuntime:
    """One function: its spec, environment, module (loaded once) and lock.

    Parameters
    ----------
    spec
        The function as the template declares it.
    local_env
        Variables the local run sets over the template's (e.g. ``MEDSERVE_MODELS_DIR``).
    region
        ``AWS_REGION`` given to the function.
    """

    spec: FunctionSpec
    local_env: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    module: ModuleType | None = field(default=None, init=False)
    init_error: BaseException | None = field(default=None, init=False)
    init_count: int = field(default=0, init=False)
    invocations: int = field(default=0, init=False)
    snapstart: Any = field(default=None, init=False)
    """The module's ``SNAPSTART`` hooks (``None`` when it has none)."""
    restored: bool = field(default=False, init=False)
    _handler: Callable[[Any, Any], Any] | None = field(default=None, init=False, repr=False)
    _lock: threading.RLock = field(default=_INVOKE_LOCK, init=False, repr=False)
    _log_stream: str = field(default="", init=False, repr=False)

    @property
    def module_name(self) -> str:
        """The unique name the handler module is imported under."""
        return f"medserve_fn_{self.spec.logical_id}"

    @property
    def loaded(self) -> bool:
        """Whether init has succeeded."""
        return self._handler is not None

    @property
    def environment(self) -> dict[str, str]:
        """What the function sees in ``os.environ``: Lambda's variables, the template's, local ones."""
        spec = self.spec
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream_name,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            # What `sam local` sets; Powertools Tracer stays off without the X-Ray daemon.
            "AWS_SAM_LOCAL": "true",
            "POWERTOOLS_SERVICE_NAME": spec.logical_id.removesuffix("Function").lower() or spec.logical_id,
            "POWERTOOLS_METRICS_NAMESPACE": "MedServe",
        }
        env.update(spec.environment)
        env.update(self.local_env)
        return env

    @property
    def log_stream_name(self) -> str:
        """A Lambda-shaped log stream name, fixed for this runtime's life."""
        if not self._log_stream:
            self._log_stream = time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + secrets.token_hex(16)
        return self._log_stream

    def context(self, request_id: str) -> LambdaContext:
        """A fresh Lambda context for one invocation, its deadline ``Timeout`` seconds from now."""
        spec = self.spec
        return LambdaContext(
            function_name=spec.function_name,
            function_version="$LATEST",
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{spec.function_name}",
            memory_limit_in_mb=str(spec.memory_size),
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{spec.function_name}",
            log_stream_name=self.log_stream_name,
            deadline_monotonic=time.monotonic() + spec.timeout,
        )

    def load(self) -> None:
        """Import the handler module once (Lambda init); a failed init is retried on the next call.

        Raises
        ------
        FunctionInitError
            When the import or the handler lookup fails.
        """
        with self._lock:
            self._ensure_loaded()

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """Run the handler on ``event`` as Lambda would, one invocation at a time.

        Parameters
        ----------
        event
            The event (already JSON-shaped).
        request_id
            ``context.aws_request_id``; a fresh uuid4 by default.

        Returns
        -------
        Any
            The handler's return value. Exceptions from the handler propagate.
        """
        request_id = request_id or str(uuid.uuid4())
        with self._lock:
            self._ensure_loaded()
            apply_env(self.environment)
            context = self.context(request_id)
            if self.snapstart is not None and not self.restored:
                self.snapstart.after_restore()
                self.restored = True
            self.invocations += 1
            assert self._handler is not None
            started = time.monotonic()
            try:
                return self._handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.spec.timeout:
                    log.warning(
                        "%s took %.1f s, over its Timeout of %d s: Lambda would have stopped it",
                        self.spec.logical_id,
                        elapsed,
                        self.spec.timeout,
                    )

    # -- internals ---------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._handler is not None:
            return
        self.init_count += 1
        try:
            apply_env(self.environment)
            module, handler = _import_handler(self.module_name, self.spec.code_dir, self.spec.handler)
            hooks = snapstart_hooks(module)
            if hooks is not None:
                hooks.before_snapshot()
        except BaseException as exc:
            self.init_error = exc
            raise FunctionInitError(f"{self.spec.logical_id}: init failed: {exc!r}") from exc
        self.module, self._handler, self.init_error = module, handler, None
        self.snapstart, self.restored = hooks, False


def snapstart_hooks(module: ModuleType) -> Any:
    """The module's SnapStart hooks (an object with ``before_snapshot``/``after_restore``), or ``None``."""
    hooks = getattr(module, "SNAPSTART", None)
    if callable(getattr(hooks, "before_snapshot", None)) and callable(getattr(hooks, "after_restore", None)):
        return hooks
    return None


def _handler_file(code_dir: Path, handler: str) -> tuple[Path, str]:
    module_path, _, attr = handler.rpartition(".")
    if not module_path or not attr:
        raise ValueError(f"Handler {handler!r} is not <module>.<function>")
    base = code_dir / module_path.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate, attr
    raise FileNotFoundError(f"no module for Handler {handler!r} in {code_dir}")


def _import_handler(module_name: str, code_dir: Path, handler: str) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
    file, attr = _handler_file(code_dir, handler)
    with _IMPORT_LOCK:
        before = set(sys.modules)
        sys.path.insert(0, str(code_dir))
        try:
            spec = importlib.util.spec_from_file_location(module_name, file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
        finally:
            sys.path.remove(str(code_dir))
            for name in set(sys.modules) - before:
                path = getattr(sys.modules[name], "__file__", None)
                if name != module_name and path and Path(path).resolve().is_relative_to(code_dir):
                    del sys.modules[name]
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AttributeError(f"{file} has no callable {attr!r}")
    return module, fn


def add_to_sys_path(paths: Sequence[Path]) -> None:
    """Put layer folders (e.g. ``layers/common``, Lambda's ``/opt/python``) on ``sys.path`` once."""
    for path in paths:
        text = str(path)
        if text not in sys.path:
            sys.path.insert(0, text)
