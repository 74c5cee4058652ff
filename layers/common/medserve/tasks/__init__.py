"""The task table: one sub-package per task (``risk``, ``imaging``, ``vitals``, ...).

A task is everything one kind of model knows: how its spec is read from a manifest,
how a request is parsed and validated, how many inputs are predicted at once, the
response and FHIR documents, how batch reads its objects, and its part of the OpenAPI
document. Each sub-package exposes one :class:`~medserve.tasks.base.Task` as ``TASK``.

The table is the list of sub-packages, so a new task is a new folder: the registry,
the API, batch and the OpenAPI builder loop over :func:`names` and call :func:`get`;
no other module names a task. Import-light: a task package imports its heavy modules
(NumPy, Pillow, pydicom) inside the methods that need them.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from medserve.tasks.base import Task


@cache
def names() -> tuple[str, ...]:
    """Every task, sorted: the sub-packages of this package."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))


@cache
def get(name: str) -> Task:
    """The task ``name`` (its package imported on first use)."""
    if name not in names():
        raise KeyError(f"no task {name!r}")
    return importlib.import_module(f"{__name__}.{name}").TASK
