"""Cold start as shipped: the handlers run from the built layers laid out as Lambda does.

Every row is a fresh interpreter that imports the handler, loads its models and
answers one API Gateway event (median of ``runs``; peak RSS from ``getrusage``):

- ``layers``: ``/opt/python`` (runtime + common layers, byte code as shipped) and
  ``/opt/models``, in a read-only temp dir, byte-code writing off, no site-packages
  (``python -I -S -B``), as on Lambda;
- ``layers_no_pyc``: the same layers with every ``__pycache__`` removed (what the layers
  shipped before they carried byte code: Lambda compiled them at each cold start);
- ``dev_venv``: the development virtualenv (pip compiled everything at install) and
  ``layers/common``, as the older rows measured;
- ``onnxruntime``: raw ``onnxruntime`` from the same layers: import, one session, one
  ``session.run`` on two parity rows (the floor any handler stands on).

``snapstart`` rows run, in one fresh interpreter from the layers, the init, the
before-snapshot hook (golden warm-up), the after-restore hook, then time the first request
and the warm p50 of the same request: what a SnapStart restore answers first.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import importtime
from bench.common import ROOT, live_folder
from local.layers import lambda_opt, make_read_only, make_writable

CASES = {
    "risk": ("risk", "events/risk_breast_cancer.json", "breast-cancer"),
    "imaging_png": ("imaging", "events/imaging_png.json", "chest-xray"),
    "imaging_dicom": ("imaging", "events/imaging_dicom.json", "chest-xray"),
    "vitals": ("vitals", "events/vitals_predict.json", "vitals-deterioration"),
    "models": ("models", "events/models_list.json", None),
}

RUNTIME_DIR: list[Path] = [Path("/nonexistent")]
"""Lambda's ``/var/runtime`` stand-in of the current layout (boto3 and its deps)."""

_PRELUDE = r"""
import time; t0 = time.perf_counter()
import sys, os
MODE, OPT, SITE, TASK, EVENT = sys.argv[1:6]
if MODE == "layers":
    sys.dont_write_bytecode = True
    sys.path[:0] = [os.path.join(OPT, "python")]
    sys.path.append(SITE)  # Lambda's /var/runtime (boto3 and its deps), after /opt/python
else:
    sys.path[:0] = ["layers/common"]
import contextlib, importlib.util, io, json, resource
class Ctx:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 1536
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    aws_request_id = "bench"; log_group_name = "g"; log_stream_name = "s"
    def get_remaining_time_in_millis(self): return 29000
def rss():  # this process's VmHWM: ru_maxrss would include the forking parent's
    return int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]) / 1024
"""

_HANDLER = (
    _PRELUDE
    + r"""
spec = importlib.util.spec_from_file_location("app", os.path.join("functions", TASK, "app.py"))
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
t1 = time.perf_counter()
ev = json.load(open(EVENT))
with contextlib.redirect_stdout(io.StringIO()):
    r = m.lambda_handler(ev, Ctx())
assert r["statusCode"] == 200, r
t2 = time.perf_counter()
print(json.dumps({"init_ms": (t1 - t0) * 1e3, "first_response_ms": (t2 - t1) * 1e3,
                  "to_first_response_ms": (t2 - t0) * 1e3, "max_rss_mb": rss()}))
"""
)

_SNAPSTART = (
    _PRELUDE
    + r"""
N = int(sys.argv[6])
spec = importlib.util.spec_from_file_location("app", os.path.join("functions", TASK, "app.py"))
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
t1 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    m.SNAPSTART.before_snapshot()
    t2 = time.perf_counter()
    m.SNAPSTART.after_restore()
t3 = time.perf_counter()
ev = json.load(open(EVENT))
sink = io.StringIO()
def call():
    with contextlib.redirect_stdout(sink):
        r = m.lambda_handler(ev, Ctx())
    assert r["statusCode"] == 200, r
    sink.seek(0); sink.truncate()
call()
t4 = time.perf_counter()
samples = []
for _ in range(N):
    a = time.perf_counter(); call(); samples.append((time.perf_counter() - a) * 1e3)
samples.sort()
print(json.dumps({"init_ms": (t1 - t0) * 1e3, "before_snapshot_ms": (t2 - t1) * 1e3,
                  "after_restore_ms": (t3 - t2) * 1e3, "first_after_restore_ms": (t4 - t3) * 1e3,
                  "warm_p50_ms": samples[len(samples) // 2], "max_rss_mb": rss()}))
"""
)

_ORT = (
    _PRELUDE
    + r"""
import numpy as np, onnxruntime as ort
folder = os.path.join(OPT, "models", TASK)
folder = os.path.join(folder, json.load(open(os.path.join(folder, "live.json")))["live"])  # the live version
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(os.path.join(folder, "model.onnx"), o, providers=["CPUExecutionProvider"])
t1 = time.perf_counter()
x = np.load(EVENT)
feeds = {k[3:]: x[k][:2] for k in x.files if k.startswith("in:")}
s.run(None, feeds)
t2 = time.perf_counter()
print(json.dumps({"init_ms": (t1 - t0) * 1e3, "first_response_ms": (t2 - t1) * 1e3,
                  "to_first_response_ms": (t2 - t0) * 1e3, "max_rss_mb": rss()}))
"""
)


def _once(code: str, mode: str, opt: Path, args: list[str], runtime_dir: Path) -> dict[str, float]:
    flags = ["-I", "-S", "-B"] if mode == "layers" else []
    done = subprocess.run(
        [sys.executable, *flags, "-c", code, mode, str(opt), str(runtime_dir), *args],
        cwd=ROOT,
        env=importtime.env_for(opt),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold-start script failed ({mode} {args}):\n{done.stderr[-3000:]}")
    return json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])


def _interleaved(jobs: dict[str, tuple[str, str, Path, list[str]]], runs: int) -> dict[str, Any]:
    """Run every path once per round, ``runs`` rounds (a busy machine slows all paths alike); medians."""
    runtime_dir = RUNTIME_DIR[0]
    recs: dict[str, list[dict[str, float]]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, (code, mode, opt, args) in jobs.items():
            recs[name].append(_once(code, mode, opt, args, runtime_dir))
    out: dict[str, Any] = {}
    for name, samples in recs.items():
        digits = 3 if name == "snapstart" else 1
        out[name] = {k: round(statistics.median(r[k] for r in samples), digits) for k in samples[0]} | {"runs": runs}
    return out


def bench_coldstart(runs: int = 5, warm_n: int = 200) -> dict[str, Any]:
    """Cold start per handler and path, raw onnxruntime, and the SnapStart first request.

    Returns
    -------
    dict
        ``{"cases": {case: {"layers", "layers_no_pyc", "dev_venv", "onnxruntime"?, "snapstart"}}}``;
        times in ms, ``max_rss_mb`` in MiB.
    """
    out: dict[str, Any] = {"runs": runs, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="medserve-opt-") as tmp:
        base = Path(tmp)
        try:
            opt = lambda_opt(base / "shipped", copy=True, read_only=True)
            RUNTIME_DIR[:] = [opt.parent / "var-runtime"]
            bare = base / "bare" / "opt"
            shutil.copytree(opt, bare, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            make_writable(bare)  # copytree kept the read-only modes of the copied folders
            make_read_only(bare)
            for case, (task, event, model) in CASES.items():
                jobs: dict[str, tuple[str, str, Path, list[str]]] = {
                    "layers": (_HANDLER, "layers", opt, [task, event]),
                    "layers_no_pyc": (_HANDLER, "layers", bare, [task, event]),
                    "dev_venv": (_HANDLER, "dev", opt, [task, event]),
                    "snapstart": (_SNAPSTART, "layers", opt, [task, event, str(warm_n)]),
                }
                if model is not None:
                    parity = live_folder(model) / "parity.npz"
                    jobs["onnxruntime"] = (_ORT, "layers", opt, [model, str(parity)])
                out["cases"][case] = _interleaved(jobs, runs)
            out["importtime"] = importtime.measure(opt, runs=3, top=6)
        finally:
            make_writable(base)
    return out


if __name__ == "__main__":
    print(json.dumps(bench_coldstart(runs=int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=1))
