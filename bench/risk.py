"""Risk handler vs raw ``session.run`` vs TensorFlow/Keras, cold and warm, side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.common import EXPORT_PY, ROOT, bench_env, fresh_process, live_folder, python_of_runtime, warm

EVENT = "events/risk_breast_cancer.json"
MODEL_ID = "breast-cancer"

_CTX = """
class Ctx:
    function_name = "bench"; function_version = "$LATEST"; memory_limit_in_mb = 1536
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    aws_request_id = "bench"; log_group_name = "g"; log_stream_name = "s"
    def get_remaining_time_in_millis(self): return 29000
"""

HANDLER_COLD = (
    "import time; t0 = time.perf_counter()\n"
    "import importlib.util, json, sys, resource, io, contextlib\n"
    "sys.path.insert(0, 'layers/common')\n"
    + _CTX
    + "spec = importlib.util.spec_from_file_location('app', 'functions/{task}/app.py')\n"
    "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
    "t1 = time.perf_counter()\n"
    "ev = json.load(open('{event}'))\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    r = m.lambda_handler(ev, Ctx())\n"
    "assert r['statusCode'] == 200, r\n"
    "t2 = time.perf_counter()\n"
    "print(json.dumps({{'init_ms': (t1-t0)*1e3, 'first_response_ms': (t2-t1)*1e3, 'to_first_response_ms': (t2-t0)*1e3,"
    " 'max_rss_mb': int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]) / 1024}}))\n"
)

ORT_COLD = """
import time; t0 = time.perf_counter()
import json, resource
import numpy as np, onnxruntime as ort
m = json.load(open('{folder}/manifest.json'))
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession('{folder}/model.onnx', o, providers=['CPUExecutionProvider'])
t1 = time.perf_counter()
x = np.load('{folder}/parity.npz')
feeds = {{k[3:]: x[k][:2] for k in x.files if k.startswith('in:')}}
s.run(None, feeds)
t2 = time.perf_counter()
print(json.dumps({{'init_ms': (t1-t0)*1e3, 'first_response_ms': (t2-t1)*1e3, 'to_first_response_ms': (t2-t0)*1e3,
 'max_rss_mb': int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]) / 1024}}))
"""

KERAS_COLD = """
import time; t0 = time.perf_counter()
import os, json, resource
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np, keras
model = keras.models.load_model('{keras_file}', compile=False)
t1 = time.perf_counter()
x = np.load('{folder}/parity.npz')
feeds = [x[k][:2] for k in x.files if k.startswith('in:')]
model.predict(feeds[0] if len(feeds) == 1 else feeds, verbose=0)
t2 = time.perf_counter()
print(json.dumps({{'init_ms': (t1-t0)*1e3, 'first_response_ms': (t2-t1)*1e3, 'to_first_response_ms': (t2-t0)*1e3,
 'max_rss_mb': int([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]) / 1024}}))
"""

KERAS_WARM = """
import os, json, time
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np, keras
model = keras.models.load_model('{keras_file}', compile=False)
x = np.load('{folder}/parity.npz')
feeds = [x[k][:2] for k in x.files if k.startswith('in:')]
inp = feeds[0] if len(feeds) == 1 else feeds
samples = []
for i in range({warmup} + {n}):
    t = time.perf_counter(); model(inp, training=False); d = (time.perf_counter() - t) * 1e3
    if i >= {warmup}: samples.append(d)
a = np.asarray(samples)
print(json.dumps({{'p50_ms': float(np.percentile(a, 50)), 'p99_ms': float(np.percentile(a, 99)),
 'mean_ms': float(a.mean()), 'n': len(samples)}}))
"""


def model_folder(model_id: str) -> Path:
    return live_folder(model_id)


def keras_file(model_id: str) -> Path | None:
    """The Keras model the export saved beside the ONNX one (not shipped), if present."""
    path = model_folder(model_id) / "model.keras"
    return path if path.is_file() else None


def handler_warm(task: str, event_file: str, n: int) -> dict[str, Any]:
    """Warm latency of the handler, in this process (as a warm Lambda container)."""
    import contextlib
    import importlib.util
    import io
    import sys

    os.environ.update(bench_env())
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    spec = importlib.util.spec_from_file_location(f"bench_{task}_app", ROOT / "functions" / task / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    event = json.loads((ROOT / event_file).read_text())

    from tests.conftest import FakeContext

    ctx = FakeContext()

    def call() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            r = module.lambda_handler(event, ctx)
        assert r["statusCode"] == 200

    return warm(call, n)


def ort_warm(model_id: str, n: int) -> dict[str, Any]:
    """Warm latency of raw ``session.run`` on the same rows as the event."""
    import numpy as np
    import onnxruntime as ort

    folder = model_folder(model_id)
    manifest = json.loads((folder / "manifest.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    rows = json.loads(json.loads((ROOT / EVENT).read_text())["body"])["instances"]
    names = [i["name"] for i in manifest["inputs"]]
    x = np.array([[r[k] for k in names] for r in rows], dtype=np.float32)
    feeds = {session.get_inputs()[0].name: x}
    return warm(lambda: session.run(None, feeds), n)


def run(n: int = 500, cold_runs: int = 5) -> dict[str, Any]:
    """All risk figures, measured in one run."""
    folder = model_folder(MODEL_ID)
    out: dict[str, Any] = {"model": MODEL_ID, "rows_per_request": 2}
    out["cold"] = {
        "handler": fresh_process(
            python_of_runtime(), HANDLER_COLD.format(task="risk", event=EVENT), env=bench_env(), runs=cold_runs
        ),
        "onnxruntime": fresh_process(python_of_runtime(), ORT_COLD.format(folder=folder), runs=cold_runs),
    }
    out["warm"] = {"handler": handler_warm("risk", EVENT, n), "onnxruntime": ort_warm(MODEL_ID, n)}
    kfile = keras_file(MODEL_ID)
    if kfile is not None and EXPORT_PY.exists():
        out["cold"]["keras"] = fresh_process(
            EXPORT_PY, KERAS_COLD.format(keras_file=kfile, folder=folder), runs=min(cold_runs, 3)
        )
        out["warm"]["keras"] = fresh_process(
            EXPORT_PY, KERAS_WARM.format(keras_file=kfile, folder=folder, n=n, warmup=20), runs=1
        )
    else:
        out["keras_missing"] = "no model.keras beside the ONNX model or no .venv-export: run `make models` first"
    return out
