"""Small timing helpers shared by the benchmarks (stdlib + numpy only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXPORT_PY = ROOT / ".venv-export" / "bin" / "python"


def bench_env() -> dict[str, str]:
    """What the template gives a function, pointed at the repo's models; quiet logs."""
    return {
        "MEDSERVE_MODELS_DIR": str(ROOT / "layers" / "models"),
        "POWERTOOLS_METRICS_NAMESPACE": "MedServe",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "MEDSERVE_ORT_THREADS": "1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50/p99/mean of a list of milliseconds, rounded for the report."""
    arr = np.asarray(samples_ms)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "n": len(samples_ms),
    }


def warm(fn: Callable[[], Any], n: int, warmup: int = 20) -> dict[str, float]:
    """Time ``fn`` ``n`` times after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return percentiles(samples)


def fresh_process(python: Path | str, code: str, *, env: dict[str, str] | None = None, runs: int = 5) -> dict[str, Any]:
    """Run ``code`` in ``runs`` fresh interpreters; each prints one JSON dict of timings.

    The wall time includes interpreter start, as a Lambda cold start does.
    """
    results = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(python), "-c", code],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        wall = (time.perf_counter() - t0) * 1000
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
        rec = json.loads(line)
        rec["process_wall_ms"] = wall
        results.append(rec)
    keys = results[0].keys()
    return {k: round(float(np.median([r[k] for r in results])), 1) for k in keys} | {"runs": runs}


def python_of_runtime() -> str:
    """The runtime venv's interpreter (the one running the benchmark)."""
    return sys.executable


def live_folder(model_id: str) -> Path:
    """The folder of a model's live version (``layers/models/<id>/live.json``)."""
    folder = ROOT / "layers" / "models" / model_id
    return folder / json.loads((folder / "live.json").read_text())["live"]
