"""The prediction-distribution metric the canary's band alarms watch: one datapoint per window.

The promotion gate records, per live version, the band that the average of ``window``
predictions from the locked split's case mix falls in (``live.json`` ``band``, see
``model_export.promote.monitoring_band``). So that the alarm compares like with like, each
function instance adds up the live version's answers per model and emits one
``PositiveShare`` (or ``MeanScore``) datapoint per ``window`` predictions: the share (or
mean) over exactly those predictions. Then:

- a quiet stack emits nothing (fewer than ``window`` predictions) and the alarm, which
  treats missing data as not breaching, cannot fire on one or two answers;
- only the LIVE version's answers count: a request pinned to a candidate with
  ``?version=`` is not the version the band describes;
- the deployment hooks' golden requests and the SnapStart warm-up are not traffic and are
  never counted (their API Gateway request ids carry the prefixes below; a real request's
  id is API Gateway's own, which no caller can set).

Only aggregates leave the function (a share or a mean, with the model id as dimension),
never an input or a single output.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_WINDOW = 100
"""Predictions per datapoint when the live version has no recorded band."""
SYNTHETIC_REQUEST_PREFIXES = ("deploy-hook-", "snapstart-warmup-")
"""Request ids of golden requests (deployment hooks, SnapStart warm-up): never counted."""

__all__ = ["DEFAULT_WINDOW", "SYNTHETIC_REQUEST_PREFIXES", "Windows", "band_window", "recorded_band", "synthetic"]


def recorded_band(release: Mapping[str, Any], version: str) -> Mapping[str, Any] | None:
    """The ``band`` of a ``live.json`` document when the promotion gate recorded it for ``version``."""
    band = release.get("band")
    return band if isinstance(band, Mapping) and str(band.get("version")) == version else None


def band_window(model_dir: Path, live_version: str) -> int:
    """The ``window`` of the band recorded for ``live_version`` in ``model_dir/live.json`` (else the default)."""
    try:
        band = recorded_band(json.loads((model_dir / "live.json").read_text(encoding="utf-8")), live_version)
        if band is not None and int(band["window"]) >= 1:
            return int(band["window"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return DEFAULT_WINDOW


class Windows:
    """Running sums of the live versions' answers, per model; a full window is one datapoint.

    Parameters
    ----------
    windows
        ``model_id -> predictions per datapoint``.
    """

    def __init__(self, windows: Mapping[str, int]) -> None:
        self.windows = dict(windows)
        self._sums: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()  # the local runner answers requests on threads

    @classmethod
    def for_models(cls, live_entries: Iterable[Any]) -> Windows:
        """Windows for the live version of each model (entries with ``id``, ``version`` and ``path``)."""
        return cls({e.id: band_window(Path(e.path).parent, e.version) for e in live_entries})

    def add(self, model_id: str, scores: Sequence[tuple[str | None, float]], positive: str | None) -> dict[str, float]:
        """Count one answer: its ``(label, score)`` per prediction (:meth:`medserve.tasks.base.Task.scores`).

        A classifier's answers count toward ``PositiveShare`` (labels equal to ``positive``), a
        regression's (labels ``None``) toward ``MeanScore`` (the scores).

        Returns
        -------
        dict
            The datapoints completed by this answer (``{}`` until ``window`` predictions are in):
            each the average over every prediction counted since the last datapoint.
        """
        if not scores:
            return {}
        if scores[0][0] is None:
            metric, total = "MeanScore", float(sum(score for _, score in scores))
        else:
            metric, total = "PositiveShare", float(sum(label == positive for label, _ in scores))
        window = self.windows.get(model_id, DEFAULT_WINDOW)
        with self._lock:
            sums = self._sums.setdefault((model_id, metric), [0.0, 0.0])
            sums[0] += total
            sums[1] += len(scores)
            if sums[1] < window:
                return {}
            full = {metric: sums[0] / sums[1]}
            sums[0] = sums[1] = 0.0
        return full

    def pending(self, model_id: str, metric: str) -> int:
        """Predictions counted toward the next datapoint (for tests and logs)."""
        with self._lock:
            return int(self._sums.get((model_id, metric), [0.0, 0.0])[1])


def synthetic(request_id: str | None) -> bool:
    """Whether an API Gateway request id is one of our golden requests (hooks, warm-up)."""
    return bool(request_id) and str(request_id).startswith(SYNTHETIC_REQUEST_PREFIXES)
