"""``python -X importtime`` of each handler, imported from the built layers as Lambda lays them out.

``python -m bench.importtime [--top N] [--runs R] [task ...]`` prints, per handler, the
modules imported, the whole process's CPU time (user + sys: less sensitive to a busy
machine than wall time), the total import time and the top-level packages whose own
modules cost the most (self times summed per package; medians of ``R`` fresh interpreters). The layers come from
:func:`local.layers.lambda_opt` (byte code as shipped, writing off).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT
from local.layers import lambda_opt, make_writable

TASKS = ("risk", "imaging", "vitals", "models", "batch")
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")

IMPORT = """
import importlib.util, os, sys
sys.dont_write_bytecode = True
sys.path[:0] = [os.path.join(sys.argv[1], "python")]
sys.path.append(sys.argv[2])  # Lambda's /var/runtime: boto3 and its deps
spec = importlib.util.spec_from_file_location("app", os.path.join("functions", sys.argv[3], "app.py"))
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
"""


def env_for(opt: Path) -> dict[str, str]:
    """The variables a function gets (models at ``opt/models``), quiet logs, fake credentials."""
    return {
        "MEDSERVE_MODELS_DIR": str(opt / "models"),
        "MEDSERVE_OUTPUT_BUCKET": "results",
        "MEDSERVE_ORT_THREADS": "1",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "MedServe",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def importtime(opt: Path, task: str) -> dict[str, int]:
    """Import microseconds spent in each top-level package's own modules (``-X importtime`` self times)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-X",
            "importtime",
            "-c",
            IMPORT,
            str(opt),
            str(opt.parent / "var-runtime"),
            task,
        ],
        cwd=ROOT,
        env=env_for(opt),
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    totals: dict[str, int] = {"(modules)": 0, "(cpu)": int(cpu * 1e6)}
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            totals["(modules)"] += 1
            top = match.group(4).split(".")[0]
            totals[top] = totals.get(top, 0) + int(match.group(1))
    return totals


def measure(opt: Path, tasks: tuple[str, ...] = TASKS, runs: int = 3, top: int = 8) -> dict[str, Any]:
    """Median total and top packages of each handler's import."""
    out: dict[str, Any] = {}
    for task in tasks:
        samples = [importtime(opt, task) for _ in range(runs)]
        modules = samples[0]["(modules)"]
        cpu_ms = statistics.median(s.pop("(cpu)") for s in samples) / 1000
        for sample in samples:
            sample.pop("(modules)")
        keys = set().union(*samples)
        med = {k: int(statistics.median(s.get(k, 0) for s in samples)) for k in keys}
        ranked = sorted(med.items(), key=lambda kv: -kv[1])
        out[task] = {
            "modules": modules,
            "process_cpu_ms": round(cpu_ms, 1),
            "total_ms": round(statistics.median(sum(s.values()) for s in samples) / 1000, 1),
            "top_ms": {k: round(v / 1000, 1) for k, v in ranked[:top]},
        }
    return out


def main() -> None:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        opt = lambda_opt(Path(tmp))
        try:
            print(json.dumps(measure(opt, tuple(args.tasks), args.runs, args.top), indent=1))
        finally:
            make_writable(Path(tmp))


if __name__ == "__main__":
    main()
