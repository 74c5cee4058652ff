"""``make bench``: run every benchmark in one process and rewrite bench/RESULTS.md.

Cold starts run in fresh interpreters (as a Lambda cold start does); warm
latencies run in this process, after a warm-up. TensorFlow/Keras figures run in
the export venv, on the same model and inputs, in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
from typing import Any

from bench.common import ROOT

OUT = ROOT / "bench" / "RESULTS.md"
RAW = ROOT / "bench" / "results.json"


def _row(name: str, rec: dict[str, Any], keys: list[str]) -> str:
    return "| " + " | ".join([name] + [f"{rec.get(k, '–')}" for k in keys]) + " |"


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['when']} on {results['machine']} by `make bench` (one run, side by side).",
        "Lambda's figures will differ (its CPU share scales with memory); compare rows, not machines.",
        "",
    ]
    risk = results.get("risk")
    if risk:
        lines += [
            f"## Risk: `{risk['model']}` ({risk['rows_per_request']} rows per request)",
            "",
            "Cold start: a fresh interpreter imports the code, loads the model and answers once "
            f"(median of {risk['cold']['handler']['runs']} runs).",
            "",
            "| path | init ms | first response ms | to first response ms | process wall ms | max RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        keys = ["init_ms", "first_response_ms", "to_first_response_ms", "process_wall_ms", "max_rss_mb"]
        for name, label in [
            ("handler", "risk handler (Powertools + medserve + ORT)"),
            ("onnxruntime", "raw onnxruntime session.run"),
            ("keras", "TensorFlow/Keras"),
        ]:
            if name in risk["cold"]:
                lines.append(_row(label, risk["cold"][name], keys))
        lines += [
            "",
            "Warm latency per request:",
            "",
            "| path | p50 ms | p99 ms | mean ms | n |",
            "|---|---|---|---|---|",
        ]
        for name, label in [
            ("handler", "risk handler"),
            ("onnxruntime", "raw session.run"),
            ("keras", "Keras model(x)"),
        ]:
            if name in risk["warm"]:
                lines.append(_row(label, risk["warm"][name], ["p50_ms", "p99_ms", "mean_ms", "n"]))
        if "keras_missing" in risk:
            lines += ["", f"Keras not measured: {risk['keras_missing']}"]
        lines.append("")
    for section in ("imaging", "vitals", "batch"):
        if section in results:
            lines += [f"## {section.capitalize()}", "", "```json", json.dumps(results[section], indent=2), "```", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="warm iterations")
    parser.add_argument("--only", nargs="*", default=None, help="risk imaging vitals batch")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    wanted = args.only or ["risk", "imaging", "vitals", "batch"]
    if "risk" in wanted:
        from bench import risk

        results["risk"] = risk.run(n=args.n)
    for name, fn in (("imaging", "bench_imaging"), ("vitals", "bench_vitals"), ("batch", "bench_batch")):
        if name in wanted and (ROOT / "bench" / f"{name}.py").exists():
            module = importlib.import_module(f"bench.{name}")
            results[name] = getattr(module, fn)()
    RAW.write_text(json.dumps(results, indent=2) + "\n")
    OUT.write_text(render(results))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
