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
        f"Measured {results['when']} on {results['machine']} by `make bench` (one run, side by side)"
        + (f"; {', '.join(results['remeasured'])} re-measured alone afterwards." if results.get("remeasured") else "."),
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
    lines += _coldstart(results.get("coldstart"), results.get("risk"))
    lines += _imaging(results.get("imaging")) + _vitals(results.get("vitals")) + _batch(results.get("batch"))
    lines += ["All raw figures: [results.json](results.json).", ""]
    return "\n".join(lines) + "\n"


_COLD_PATHS = [
    ("layers", "handler, built layers as shipped (.pyc)"),
    ("layers_no_pyc", "handler, same layers without .pyc (as shipped before)"),
    ("dev_venv", "handler, development venv"),
    ("onnxruntime", "raw onnxruntime: import + session + run"),
]


def _coldstart(r: dict[str, Any] | None, risk: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    out = [
        "## Cold start as shipped",
        "",
        "Fresh interpreter to first response through the handler (API Gateway event in, JSON out), median of "
        f"{r['runs']} runs, the paths of a row group taking turns. The layers are built by their Makefiles "
        "and laid out as Lambda does (`/opt/python` = "
        "runtime + common layers, `/opt/models`) in a read-only temp dir, byte-code writing off, no site-packages "
        "(`python -I -S -B`). Raw onnxruntime runs from the same layers. Ratio: to first response / raw onnxruntime.",
        "",
        "| first request | path | init ms | first response ms | to first response ms | ratio | max RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, rec in r["cases"].items():
        floor = rec.get("onnxruntime", {}).get("to_first_response_ms")
        paths = list(_COLD_PATHS)
        recs = dict(rec)
        if case == "risk" and risk and "keras" in risk.get("cold", {}):
            recs["keras"] = risk["cold"]["keras"]
            paths.append(("keras", "TensorFlow/Keras load + predict (export venv)"))
        for key, label in paths:
            if key not in recs:
                continue
            x = recs[key]
            ratio = f"{x['to_first_response_ms'] / floor:.2f}x" if floor else "–"
            out.append(
                f"| {case} | {label} | {x['init_ms']} | {x['first_response_ms']} | {x['to_first_response_ms']} | "
                f"{ratio} | {x['max_rss_mb']} |"
            )
    out += [
        "",
        "### SnapStart: first request after restore (hooks run)",
        "",
        "One fresh interpreter from the same layers: init, the before-snapshot hook (every golden request answered "
        "once), the after-restore hook, then the first request and the warm p50 of the same request.",
        "",
        "| route | init ms | before-snapshot ms | after-restore ms | first request after restore ms | "
        "warm p50 ms | first / warm p50 | max RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, rec in r["cases"].items():
        s = rec["snapstart"]
        ratio = f"{s['first_after_restore_ms'] / s['warm_p50_ms']:.1f}x" if s["warm_p50_ms"] else "–"
        out.append(
            f"| {case} | {s['init_ms']:.1f} | {s['before_snapshot_ms']:.1f} | {s['after_restore_ms']:.2f} | "
            f"{s['first_after_restore_ms']:.3f} | {s['warm_p50_ms']:.3f} | {ratio} | {s['max_rss_mb']:.1f} |"
        )
    imports = r.get("importtime")
    if imports:
        out += [
            "",
            "### Import time from the layers (`python -X importtime`)",
            "",
            "Per handler, median of 3 fresh interpreters: modules imported, the process's CPU time (user + sys), "
            "the whole import (wall ms) and the packages whose own modules cost most (self times summed).",
            "Before/after of the import deferrals: [IMPORTTIME.md](IMPORTTIME.md).",
            "",
            "| handler | modules | process CPU ms | import ms | top packages (ms) |",
            "|---|---|---|---|---|",
        ]
        for task, rec in imports.items():
            tops = ", ".join(f"{k} {v}" for k, v in rec["top_ms"].items())
            cpu = rec.get("process_cpu_ms", "–")
            out.append(f"| {task} | {rec.get('modules', '–')} | {cpu} | {rec['total_ms']} | {tops} |")
    return out + [""]


def _pp(rec: dict[str, Any]) -> str:
    return f"{rec['p50_ms']} / {rec['p99_ms']}"


def _imaging(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    out = [
        f"## Imaging: {r['model']}",
        "",
        "Warm latency, p50 / p99 ms (the handler includes routing, base64, validation, JSON and the heatmap PNG):",
        "",
        "| input | handler | decode + session.run | decode only | session.run only | handler overhead p50 |",
        "|---|---|---|---|---|---|",
    ]
    for name, rec in r["warm"].items():
        out.append(
            f"| {name} ({rec['bytes']} B) | {_pp(rec['handler'])} | {_pp(rec['decode_plus_session_run'])} | "
            f"{_pp(rec['decode_only'])} | {_pp(rec['session_run_only'])} | {rec['handler_overhead_p50_ms']} |"
        )
    out += [
        "",
        "Cold start (fresh interpreter; pydicom is imported only when a DICOM arrives):",
        "",
        "| first request | init ms | first response ms | to first response ms | max RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, rec in r["cold"].items():
        out.append(_row(name, rec, ["init_ms", "first_response_ms", "to_first_response_ms", "max_rss_mb"]))
    return out + [""]


def _vitals(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    out = [
        f"## Vitals: {r['model']}",
        "",
        "Warm latency, p50 / p99 ms, by sequence length:",
        "",
        "| observations | request bytes | handler | handler, explain | raw session.run |",
        "|---|---|---|---|---|",
    ]
    for length, rec in r["lengths"].items():
        out.append(
            f"| {length} | {rec['request_bytes']} | {_pp(rec['handler'])} | {_pp(rec['handler_explain'])} | "
            f"{_pp(rec['onnxruntime'])} |"
        )
    return out + [""]


def _batch(r: dict[str, Any] | None) -> list[str]:
    if not r:
        return []
    return [
        f"## Batch: {r['model']}, one {r['rows']:,}-row CSV ({r['csv_bytes']:,} bytes), chunks of {r['chunk_rows']}",
        "",
        "| path | seconds | rows/s |",
        "|---|---|---|",
        f"| batch handler (SQS event -> S3 get -> parse -> validate -> predict -> S3 put, moto) | "
        f"{r['handler']['seconds']} | {r['handler']['rows_per_s']:,.0f} |",
        f"| parse + validate + predict (no S3) | {r['process']['seconds']} | {r['process']['rows_per_s']:,.0f} |",
        f"| raw session.run, chunked | {r['raw_session_run_chunked']['seconds']} | "
        f"{r['raw_session_run_chunked']['rows_per_s']:,.0f} |",
        f"| raw session.run, one call | {r['raw_session_run']['seconds']} | "
        f"{r['raw_session_run']['rows_per_s']:,.0f} |",
        *(
            [
                f"| anchor: pandas read_csv + one session.run (bench venv only) | "
                f"{r['pandas_read_csv_and_session_run']['seconds']} | "
                f"{r['pandas_read_csv_and_session_run']['rows_per_s']:,.0f} |",
                "",
                f"The handler runs at {r['handler_share_of_pandas']:.0%} of the pandas anchor's speed, S3 round trips"
                " and the result document (one row per input row) included.",
            ]
            if "pandas_read_csv_and_session_run" in r
            else []
        ),
        "",
        "A clean CSV of numbers is parsed in bulk (one split, C float parsing per column, vectorised",
        "range checks); only rows that break a rule are re-read field by field, so each bad field is named.",
        "",
        *_batch_vitals(r.get("vitals")),
    ]


def _batch_vitals(v: dict[str, Any] | None) -> list[str]:
    if not v:
        return []
    return [
        f"Vitals: {v['sequences']:,} sequences of {v['observations_per_sequence']} observations (JSON Lines), "
        "validated column-wise (the API's validator, one by one, for any sequence that check does not pass) "
        "and padded into one `session.run` per chunk: "
        f"{v['process']['sequences_per_s']:,.0f} sequences/s "
        f"({v['process']['seconds']} s).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="warm iterations")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="risk coldstart imaging vitals batch: re-measure these, keep the others from results.json (noted)",
    )
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    wanted = args.only or ["risk", "coldstart", "imaging", "vitals", "batch"]
    if "risk" in wanted:
        from bench import risk

        results["risk"] = risk.run(n=args.n)
    for name, fn in (
        ("coldstart", "bench_coldstart"),
        ("imaging", "bench_imaging"),
        ("vitals", "bench_vitals"),
        ("batch", "bench_batch"),
    ):
        if name in wanted and (ROOT / "bench" / f"{name}.py").exists():
            module = importlib.import_module(f"bench.{name}")
            results[name] = getattr(module, fn)()
    if args.only and RAW.exists():
        previous = json.loads(RAW.read_text())
        kept = {k: v for k, v in previous.items() if k not in results and k != "remeasured"}
        if kept:
            results = {**previous, **results, "when": previous["when"], "machine": previous["machine"]}
            results["remeasured"] = [f"{name} ({dt.datetime.now(dt.UTC):%H:%M} UTC)" for name in wanted]
    RAW.write_text(json.dumps(results, indent=2) + "\n")
    OUT.write_text(render(results))
    print(OUT.read_text())


def rerender() -> None:
    """Rewrite RESULTS.md from results.json (no measuring)."""
    OUT.write_text(render(json.loads(RAW.read_text())))


if __name__ == "__main__":
    main()
