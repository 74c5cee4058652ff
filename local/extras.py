"""Services started beside the HTTP API by ``python -m local`` (e.g. the S3 endpoint).

An extra is a module with one function::

    def start(ctx: ExtraContext) -> Callable[[], None] | None:
        '''Start the service (non-blocking: use a daemon thread); return how to stop it.'''

``ctx.api`` is the running :class:`local.LocalApi`: ``ctx.api.template`` (the parsed
template: ``functions_with_event("SQS")``, ``raw["Metadata"]`` ...) and
``ctx.api.functions[logical_id]`` (a :class:`local.functions.FunctionRuntime`: set
``.local_env`` before its first call, then ``.invoke(event)``; it is loaded once,
in isolation, with its template environment, like the API functions). Append lines
to ``ctx.banner`` to show them in the startup banner.

Register an extra by adding its module name to :data:`EXTRAS`. The environment
variable ``MEDSERVE_LOCAL_EXTRAS`` overrides the list (comma-separated module names;
``none`` or empty starts none).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local.server import LocalApi

log = logging.getLogger("local")

EXTRAS: tuple[str, ...] = ("local.s3",)
"""Modules started after the API, in order (stopped in reverse)."""

ENV_VAR = "MEDSERVE_LOCAL_EXTRAS"

Stopper = Callable[[], None]


@dataclass
class ExtraContext:
    """What an extra gets: the running API, banner lines to add, and the runner's stop event."""

    api: LocalApi
    banner: list[str] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)


def selected_extras(default: Sequence[str] = EXTRAS) -> tuple[str, ...]:
    """The extras to start: ``$MEDSERVE_LOCAL_EXTRAS`` when set, else ``default``."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return tuple(default)
    if value.strip().lower() in ("", "none"):
        return ()
    return tuple(name.strip() for name in value.split(",") if name.strip())


def start_extras(ctx: ExtraContext, names: Sequence[str] | None = None) -> list[tuple[str, Stopper]]:
    """Import and start each extra; on a failure, stop the ones already started and re-raise.

    Returns
    -------
    list
        ``(module name, stop function)`` for each started extra, in start order.
    """
    started: list[tuple[str, Stopper]] = []
    for name in selected_extras() if names is None else names:
        try:
            stop = importlib.import_module(name).start(ctx)
        except BaseException:
            stop_extras(started)
            raise
        started.append((name, stop or (lambda: None)))
        log.debug("extra %s started", name)
    return started


def stop_extras(started: Sequence[tuple[str, Stopper]]) -> None:
    """Stop extras in reverse start order, logging (not raising) their failures."""
    for name, stop in reversed(started):
        try:
            stop()
        except Exception:
            log.exception("stopping extra %s failed", name)
