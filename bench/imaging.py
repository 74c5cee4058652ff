"""Imaging handler vs decode + raw ``session.run``, for PNG and DICOM, warm and cold.

Runs in the runtime venv (``.venv``: Powertools, pydicom, ONNX Runtime), in a child
process, whichever interpreter calls :func:`bench_imaging`, so ``make bench`` can
drive it from either venv. Returns figures; ``bench/__main__.py`` writes RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import bench_env, live_folder

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PY = ROOT / ".venv" / "bin" / "python"

# Both scripts load the handler as Lambda would: its folder's app.py, the layer on sys.path
# (the environment comes from bench_env(), as the template gives it).
_LOAD_APP = (
    'sys.path[:0] = ["layers/common", "."]\n'
    'spec = importlib.util.spec_from_file_location("imaging_app", "functions/imaging/app.py")\n'
    "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)"
)

_WARM = r"""
import base64, contextlib, importlib.util, io, json, os, sys, time
import numpy as np
from tests.conftest import FakeContext, load_event
_LOAD_APP_
from medserve.tasks.imaging.decode import decode_image, to_model_input
from medserve.tasks.imaging.service import heatmap
entry = app.REGISTRY.get("chest-xray", task="imaging")
ispec = entry.spec
N, WARMUP = {n}, 20

def pct(samples):
    a = np.asarray(samples)
    return {{"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
             "mean_ms": round(float(a.mean()), 3), "n": len(samples)}}

def timed(fn):
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(N):
        t0 = time.perf_counter(); fn(); out.append((time.perf_counter() - t0) * 1e3)
    return pct(out)

results = {{}}
ctx = FakeContext()
for name, event_name, query in [("png", "imaging_png", None), ("png_explain", "imaging_png", {{"explain": "true"}}),
                                ("dicom", "imaging_dicom", None)]:
    ev = load_event(event_name)
    ev["queryStringParameters"] = query
    data = base64.b64decode(ev["body"])
    sink = io.StringIO()
    def handler_call():
        with contextlib.redirect_stdout(sink):
            r = app.lambda_handler(ev, ctx)
        assert r["statusCode"] == 200, r
        sink.seek(0); sink.truncate()
    def decode_only():
        return decode_image(data, spec=ispec.image, field="body")
    def raw_call():
        img = decode_only()
        out = entry.session.run(None, {{ispec.input_name: to_model_input(img, ispec.image)}})
        if query:
            heatmap(out[1][0], img.width, img.height)
    x = to_model_input(decode_only(), ispec.image)
    results[name] = {{
        "bytes": len(data),
        "handler": timed(handler_call),
        "decode_plus_session_run": timed(raw_call),
        "decode_only": timed(decode_only),
        "session_run_only": timed(lambda: entry.session.run(None, {{ispec.input_name: x}})),
    }}
    h, r = results[name]["handler"]["p50_ms"], results[name]["decode_plus_session_run"]["p50_ms"]
    results[name]["handler_overhead_p50_ms"] = round(h - r, 3)
print(json.dumps(results))
"""

_COLD = r"""
import time; t0 = time.perf_counter()
import contextlib, importlib.util, io, json, os, resource, sys
def peak_rss_mb():  # this process's VmHWM (ru_maxrss would include the forking parent's)
    return int([ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]) / 1024
_LOAD_APP_
t1 = time.perf_counter()
from tests.conftest import FakeContext, load_event
ev = load_event("{event}")
with contextlib.redirect_stdout(io.StringIO()):
    r = app.lambda_handler(ev, FakeContext())
assert r["statusCode"] == 200, r
t2 = time.perf_counter()
print(json.dumps({{"init_ms": (t1 - t0) * 1e3, "first_response_ms": (t2 - t1) * 1e3,
                  "to_first_response_ms": (t2 - t0) * 1e3, "pydicom_loaded": float("pydicom" in sys.modules),
                  "max_rss_mb": peak_rss_mb()}}))
"""


def _python() -> str:
    return str(RUNTIME_PY) if RUNTIME_PY.exists() else sys.executable


def _run(code: str) -> dict[str, Any]:
    out = subprocess.run(
        [_python(), "-c", code],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **bench_env(), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def _cold(event: str, runs: int) -> dict[str, Any]:
    recs = [_run(_COLD.replace("_LOAD_APP_", _LOAD_APP).format(event=event)) for _ in range(runs)]
    keys = recs[0].keys()
    return {k: round(sorted(r[k] for r in recs)[len(recs) // 2], 1) for k in keys} | {"runs": runs}


def bench_imaging(n: int = 200, cold_runs: int = 3) -> dict[str, Any]:
    """Warm p50/p99 of the imaging handler vs decode + raw ``session.run`` (PNG, PNG+explain, DICOM).

    Parameters
    ----------
    n
        Timed warm iterations per path (after 20 warm-up calls).
    cold_runs
        Fresh interpreters per cold-start figure (median reported).

    Returns
    -------
    dict
        ``{"model", "warm": {png|png_explain|dicom: {"handler", "decode_plus_session_run",
        "decode_only", "session_run_only", "handler_overhead_p50_ms", "bytes"}},
        "cold": {png|dicom: {...}}}``; times in milliseconds.
    """
    manifest = json.loads((live_folder("chest-xray") / "manifest.json").read_text())
    return {
        "model": f"chest-xray {manifest['version']} (sha256 {manifest['onnx']['sha256'][:12]}...)",
        "threads": "ORT intra_op 1",
        "warm": _run(_WARM.replace("_LOAD_APP_", _LOAD_APP).format(n=int(n))),
        "cold": {"png": _cold("imaging_png", cold_runs), "dicom": _cold("imaging_dicom", cold_runs)},
    }


if __name__ == "__main__":
    print(json.dumps(bench_imaging(n=int(sys.argv[1]) if len(sys.argv) > 1 else 200), indent=2))
