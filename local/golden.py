"""Record or check the golden requests of every model version (``make golden``).

``python -m local.golden --write`` builds 2-4 representative requests for every
``<models_dir>/<id>/<version>/`` (one with a ``manifest.json``), sends each through the
task's handler (``functions/<task>/app.py``, exactly as Lambda calls it) and stores the
answer's numeric part in ``golden.json`` beside the model (format: :mod:`medserve.golden`).
``--check`` sends the same requests and reports every difference (exit 1 on any).

Representative requests, per task:

- risk: the ``events/`` requests for this model, then rows of the model's own parity
  reference (``parity.npz``, raw units) with ``explain``; at most 4.
- imaging: the ``events/`` PNG (with ``explain``), DICOM and JSON-wrapped image, pointed at this model.
- vitals: the ``events/`` sequence, with and without ``explain``, pointed at this model.

Each request asks for its version (``?version=``); a route that does not take that
parameter yet is recorded without it (and the tool says so).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS = REPO_ROOT / "events"
DEFAULT_MODELS = REPO_ROOT / "layers" / "models"
ATOL = 1e-5
RTOL = 1e-4
MAX_REQUESTS = 4
EVENTS_BY_TASK = {
    "imaging": ["imaging_png", "imaging_dicom", "imaging_json"],
    "vitals": ["vitals_predict", "vitals_predict_explain"],
}


class _Ctx:
    function_name = "golden"
    function_version = "$LATEST"
    memory_limit_in_mb = 1536
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:golden"
    aws_request_id = "golden"
    log_group_name = "golden"
    log_stream_name = "golden"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def model_folders(models_dir: Path) -> list[Path]:
    """Every ``<id>/<version>/`` folder holding a manifest, sorted."""
    return sorted(p.parent for p in models_dir.glob("*/*/manifest.json"))


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def _from_event(name: str, model_id: str, task: str, version: str) -> dict[str, Any]:
    ev = _event(name)
    headers = {k.lower(): v for k, v in (ev.get("headers") or {}).items() if k.lower() in ("content-type", "accept")}
    request: dict[str, Any] = {
        "name": name,
        "method": "POST",
        "path": f"/v1/{task}/{model_id}/predict",
        "query": {**(ev.get("queryStringParameters") or {}), "version": version},
        "headers": headers,
    }
    if ev.get("isBase64Encoded"):
        request["body_base64"] = ev["body"]
    else:
        request["body"] = json.loads(ev["body"])
    return request


def _risk_requests(folder: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    model_id, version = manifest["id"], manifest["version"]
    out = []
    for path in sorted(EVENTS.glob("risk_*.json")):
        ev = json.loads(path.read_text(encoding="utf-8"))
        if ev.get("path") == f"/v1/risk/{model_id}/predict" and "fhir" not in path.stem:
            out.append(_from_event(path.stem, model_id, "risk", version))
    parity = folder / "parity.npz"
    if parity.is_file():
        data = np.load(parity)
        key = next(k for k in data.files if k.startswith("in:"))
        x = data[key]
        names = [i["name"] for i in manifest["inputs"]]
        picks = sorted({0, len(x) // 2, len(x) - 1})
        instances = [{n: round(float(v), 6) for n, v in zip(names, x[i], strict=True)} for i in picks]
        out.append(
            {
                "name": "parity_rows_explain",
                "method": "POST",
                "path": f"/v1/risk/{model_id}/predict",
                "query": {"version": version},
                "headers": {"content-type": "application/json"},
                "body": {"instances": instances, "explain": True},
            }
        )
    return out[:MAX_REQUESTS]


def candidate_requests(folder: Path) -> list[dict[str, Any]]:
    """The representative requests for one model version (see the module docstring)."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    task = manifest["task"]
    if task == "risk":
        return _risk_requests(folder, manifest)
    names = EVENTS_BY_TASK.get(task, [])
    return [_from_event(n, manifest["id"], task, manifest["version"]) for n in names][:MAX_REQUESTS]


_HANDLERS: dict[str, ModuleType] = {}


def handler(task: str) -> ModuleType:
    """``functions/<task>/app.py``, imported once (Lambda init)."""
    if task not in _HANDLERS:
        spec = importlib.util.spec_from_file_location(
            f"medserve_golden_{task}", REPO_ROOT / "functions" / task / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _HANDLERS[task] = module
    return _HANDLERS[task]


def send(task: str, request: dict[str, Any]) -> tuple[int, Any]:
    """Send one golden request through the task's Lambda handler; (status, parsed JSON body)."""
    from medserve.golden import golden_event

    with contextlib.redirect_stdout(io.StringIO()):
        response = handler(task).lambda_handler(golden_event(request), _Ctx())
    body = response.get("body")
    try:
        return response["statusCode"], json.loads(body) if body else None
    except ValueError:
        return response["statusCode"], body


def _refuses_version(status: int, body: Any) -> bool:
    errors = body.get("errors", []) if isinstance(body, dict) else []
    return status == 422 and any(e.get("field") == "version" for e in errors)


def record(folder: Path) -> dict[str, Any]:
    """Send the representative requests and return the ``golden.json`` document."""
    from medserve.golden import answer_part

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    requests = []
    for request in candidate_requests(folder):
        status, body = send(manifest["task"], request)
        if _refuses_version(status, body):
            print(f"  note: {request['path']} does not take ?version= yet; recorded without it", file=sys.stderr)
            request["query"].pop("version")
            status, body = send(manifest["task"], request)
        if status != 200:
            raise SystemExit(f"{folder}: {request['name']} answered {status}: {body}")
        if not request["query"]:
            request.pop("query")
        request["expect"] = {"status": status, "json": answer_part(body)}
        request["atol"], request["rtol"] = ATOL, RTOL
        requests.append(request)
    return {"model": manifest["id"], "version": manifest["version"], "requests": requests}


def check(folder: Path) -> list[str]:
    """Every difference between the served answers and ``golden.json`` (empty: they match)."""
    from medserve.golden import answer_part, differences, golden_requests

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    requests = golden_requests(folder)
    if not requests:
        return [f"{folder.name}: no {folder / 'golden.json'}"]
    problems = []
    for request in requests:
        status, body = send(manifest["task"], request)
        expect = request["expect"]
        if status != expect["status"]:
            problems.append(f"{request['name']}: status {status}, recorded {expect['status']}")
            continue
        diffs = differences(answer_part(body), expect["json"], atol=request["atol"], rtol=request["rtol"])
        problems += [f"{request['name']}: {d}" for d in diffs]
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m local.golden --write | --check [--models DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m local.golden", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="record golden.json for every model version")
    mode.add_argument("--check", action="store_true", help="verify the served answers against golden.json")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("MEDSERVE_MODELS_DIR", DEFAULT_MODELS)))
    args = parser.parse_args(argv)

    for key, value in {
        "MEDSERVE_MODELS_DIR": str(args.models.resolve()),
        "POWERTOOLS_SERVICE_NAME": "golden",
        "POWERTOOLS_METRICS_NAMESPACE": "MedServe",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "MEDSERVE_ORT_THREADS": "1",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "MEDSERVE_OUTPUT_BUCKET": os.environ.get("MEDSERVE_OUTPUT_BUCKET", "golden-unused"),
    }.items():
        os.environ[key] = value
    common = str(REPO_ROOT / "layers" / "common")
    if common not in sys.path:
        sys.path.insert(0, common)

    failed = 0
    for folder in model_folders(args.models):
        label = f"{folder.parent.name} {folder.name}"
        if args.write:
            doc = record(folder)
            (folder / "golden.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
            print(f"{label}: recorded {len(doc['requests'])} golden requests")
        else:
            problems = check(folder)
            failed += bool(problems)
            print(f"{label}: " + ("ok" if not problems else "DIFFERS\n  " + "\n  ".join(problems)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
