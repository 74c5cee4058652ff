"""Shadow scoring: a candidate version answers a sample of live requests, and only its agreement is kept.

Switched on per deployment (template parameters ``ShadowModels`` and ``ShadowSampleRate``)
through two environment variables, read once when a function's app is built:

``MEDSERVE_SHADOW``
    ``<model_id>@<version>[,<model_id>@<version> ...]``: the version that shadows each
    model's live version (a candidate served side by side, see :mod:`medserve.registry`).
``MEDSERVE_SHADOW_SAMPLE``
    The share of live requests, 0 to 1, that the shadow version scores too (0: off, the default).

For a sampled request that the LIVE version answered (a request pinned with ``?version=``
is never shadowed), the shadow version predicts on the same parsed request, after the live
answer was computed. Its answer is never returned, logged or stored. Two metrics are
emitted, per ``ModelId`` and ``ShadowVersion``, in the ``MedServe`` namespace:

``ShadowAgreement``
    The share of the answer's predictions whose label is the live one's (classifiers).
``ShadowScoreDelta``
    The mean absolute difference of the positive-label probability (classifiers) or of the
    predicted value (regressions, in the output's units).

Any failure of the shadow path counts in ``ShadowErrors`` (its exception type alone is
logged) and never changes the live answer. A sampled request pays the shadow version's
prediction time (without an explanation, even when the request asked for one); the sample
rate bounds that cost. A shadow version must read the live version's parsed request: one
whose inputs differ (names, order, ONNX inputs) is dropped when the function starts.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medserve.registry import ModelEntry, Registry
    from medserve.tasks.base import Task

SHADOW_ENV = "MEDSERVE_SHADOW"
SAMPLE_ENV = "MEDSERVE_SHADOW_SAMPLE"

__all__ = ["SAMPLE_ENV", "SHADOW_ENV", "Shadow", "agreement"]


def agreement(live: list[tuple[str | None, float]], shadow: list[tuple[str | None, float]]) -> dict[str, float]:
    """``ShadowAgreement`` (when labelled) and ``ShadowScoreDelta`` of two answers to one request.

    Each answer is its ``(label, score)`` per prediction (:meth:`medserve.tasks.base.Task.scores`).
    """
    if len(live) != len(shadow) or not live:
        raise ValueError("the two answers do not hold the same number of predictions")
    out = {"ShadowScoreDelta": sum(abs(a[1] - b[1]) for a, b in zip(live, shadow, strict=True)) / len(live)}
    if all(label is not None for label, _ in live):
        out["ShadowAgreement"] = sum(a[0] == b[0] for a, b in zip(live, shadow, strict=True)) / len(live)
    return out


def _emit(values: Mapping[str, float], model_id: str, version: str) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MedServe")
    for name, value in values.items():
        unit = MetricUnit.Count if name == "ShadowErrors" else MetricUnit.NoUnit
        with single_metric(name=name, unit=unit, value=value, namespace=namespace) as metric:
            metric.add_dimension(name="ModelId", value=model_id)
            metric.add_dimension(name="ShadowVersion", value=version)


@dataclass
class Shadow:
    """Which version shadows which model, and how often."""

    versions: dict[str, str] = field(default_factory=dict)
    """``model_id -> version`` of the shadow."""
    rate: float = 0.0
    draw: Callable[[], float] = random.random
    emit: Callable[[Mapping[str, float], str, str], None] = _emit

    @classmethod
    def from_env(
        cls, registry: Registry | None = None, task: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Shadow:
        """The configuration in ``environ`` (``os.environ``), for the models of ``task`` in ``registry``.

        A malformed value switches shadowing off rather than failing the function: shadowing must
        never cost a live answer. With a registry, a shadow version that is not served, or whose
        inputs differ from the live version's (names, order, ONNX inputs: the live version's
        parsed request would be fed to it), is dropped at init with a warning naming the model.
        """
        env = os.environ if environ is None else environ
        versions: dict[str, str] = {}
        for item in (env.get(SHADOW_ENV) or "").split(","):
            model_id, at, version = item.strip().partition("@")
            if at and model_id and version:
                versions[model_id] = version
        try:
            rate = float(env.get(SAMPLE_ENV) or 0.0)
        except ValueError:
            rate = 0.0
        if not 0.0 < rate <= 1.0:  # NaN, negative, above 1: off
            rate = 0.0
        if registry is not None:
            versions = {m: v for m, v in versions.items() if _compatible(registry, task, m, v)}
        return cls(versions, rate if versions else 0.0)

    @property
    def on(self) -> bool:
        """Whether any request can be shadowed."""
        return self.rate > 0.0

    def score(
        self,
        task: Task,
        registry: Registry,
        entry: ModelEntry,
        parsed: Any,
        result: dict[str, Any],
        *,
        pinned: bool,
    ) -> bool:
        """Shadow one answered request when it is sampled; ``True`` when the shadow version scored it."""
        version = self.versions.get(entry.id)
        if pinned or version is None or version == entry.version or self.draw() >= self.rate:
            return False
        try:
            candidate = registry.get(entry.id, task=task.name, version=version)
            shadow = task.predict(candidate, [task.unexplained(parsed)])[0]  # no explanation: not shown to anyone
            values = agreement(task.scores(entry, result), task.scores(candidate, shadow))
            self.emit(values, entry.id, version)
        except Exception as exc:  # noqa: BLE001 - the live answer stands whatever the shadow does
            from medserve.api import logger

            # the type only: a message could quote the request
            logger.warning("shadow scoring failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(Exception):
                self.emit({"ShadowErrors": 1.0}, entry.id, version)
            return False
        return True


def _inputs(entry: Any) -> tuple[Any, Any]:
    manifest = entry.manifest
    return [i.get("name") for i in manifest.get("inputs", [])], manifest.get("onnx", {}).get("inputs")


def _compatible(registry: Registry, task: str | None, model_id: str, version: str) -> bool:
    """Whether ``version`` of ``model_id`` is served and reads the live version's parsed requests."""
    try:
        model = registry.model(model_id, task)
        candidate = registry.get(model_id, task=task, version=version)
    except Exception:  # noqa: BLE001 - not served here (another task's model, unknown or retired version)
        ok = False
    else:
        ok = candidate.version != model.live.version and _inputs(candidate) == _inputs(model.live)
    if not ok:
        from medserve.api import logger

        logger.warning(
            "shadow version dropped: not served here, or its inputs differ", extra={"shadow_model": model_id}
        )
    return ok
