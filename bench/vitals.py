"""Vitals handler vs raw ``session.run``, warm, at 1, 12 and 500 observations.

``bench_vitals()`` measures, for each sequence length, the warm latency of the whole
Lambda handler (API Gateway event in, JSON out: parsing, validation, NEWS2, one
``session.run``), the same with ``"explain": true`` (plus one batched occlusion run),
and raw ``session.run`` on the same ``[1, T, 8]`` arrays. The handler needs
Powertools, which lives in the runtime venv (``.venv``); when the current interpreter
lacks it (``make bench`` runs in ``.venv-export``) the measurement runs there in a
subprocess (``python -m bench.vitals --worker``) and its JSON is returned.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.common import ROOT, bench_env, warm

LENGTHS = (1, 12, 500)
MODEL_ID = "vitals-deterioration"
EVENT = ROOT / "events" / "vitals_predict.json"
RUNTIME_PY = ROOT / ".venv" / "bin" / "python"


def observations(n: int) -> list[dict[str, Any]]:
    """``n`` plausible hourly observations, worsening towards the end (deterministic)."""
    rng = np.random.default_rng(n)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        s = i / max(1, n - 1)
        out.append(
            {
                "time": (t0 + timedelta(hours=i)).isoformat(),
                "heart_rate": round(float(80 + 30 * s + rng.normal(0, 4))),
                "respiratory_rate": round(float(16 + 8 * s + rng.normal(0, 1))),
                "spo2": round(float(min(100.0, 97 - 4 * s + rng.normal(0, 1)))),
                "temperature": round(float(36.8 + 1.2 * s + rng.normal(0, 0.2)), 1),
                "systolic_bp": round(float(125 - 25 * s + rng.normal(0, 6))),
                "consciousness": "A",
                "supplemental_oxygen": bool(s > 0.7),
            }
        )
    return out


def _measure(n: int) -> dict[str, Any]:
    """All figures, in this process (needs the runtime venv)."""
    os.environ.update(bench_env())
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    spec = importlib.util.spec_from_file_location("bench_vitals_app", ROOT / "functions" / "vitals" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    from medserve.tasks.vitals.features import encode
    from medserve.tasks.vitals.validation import validate_request
    from tests.conftest import FakeContext

    ctx = FakeContext()
    entry = module.REGISTRY.get(MODEL_ID, task="vitals")
    session = entry.session
    base_event = json.loads(EVENT.read_text())
    out: dict[str, Any] = {"model": MODEL_ID, "threads": 1, "lengths": {}}
    for t in LENGTHS:
        obs = observations(t)
        events = {}
        for explain in (False, True):
            ev = dict(base_event)
            ev["body"] = json.dumps({"observations": obs, "explain": explain})
            events[explain] = ev

        def call(ev: dict[str, Any]) -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                r = module.lambda_handler(ev, ctx)
            assert r["statusCode"] == 200, r

        req = validate_request({"observations": obs})
        x = encode(req.observations, req.times)[None]
        feeds = {"observations": x, "mask": np.ones(x.shape[:2], dtype=np.float32)}
        out["lengths"][str(t)] = {
            "handler": warm(lambda ev=events[False]: call(ev), n),
            "handler_explain": warm(lambda ev=events[True]: call(ev), max(20, n // 4)),
            "onnxruntime": warm(lambda feeds=feeds: session.run(None, feeds), n),
            "request_bytes": len(events[False]["body"]),
        }
    return out


def bench_vitals(n: int = 200) -> dict[str, Any]:
    """Warm p50/p99 of the vitals handler and of raw ``session.run`` at 1, 12, 500 observations.

    Parameters
    ----------
    n
        Timed iterations per figure (explain: ``n // 4``, at least 20), after 20 warm-up calls.

    Returns
    -------
    dict
        ``{"model", "threads", "lengths": {"1": {"handler", "handler_explain", "onnxruntime",
        "request_bytes"}, ...}}``; each figure is ``{"p50_ms", "p99_ms", "mean_ms", "n"}``.
    """
    if importlib.util.find_spec("aws_lambda_powertools") is not None:
        return _measure(n)
    done = subprocess.run(
        [str(RUNTIME_PY), "-m", "bench.vitals", "--worker", "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **bench_env()},
    )
    return json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])


def main() -> None:
    """``python -m bench.vitals [--n N] [--worker]``: print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--worker", action="store_true", help="measure in this interpreter")
    args = parser.parse_args()
    result = _measure(args.n) if args.worker else bench_vitals(args.n)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
