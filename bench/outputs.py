"""Cost of the clinical outputs: audit record, FHIR provenance, DICOM SR (``python -m bench.outputs``).

The audit budget is <= 1 ms p50 per request (issue 12): building the AuditEvent,
serialising it and writing the JSON line to stdout (a real file descriptor,
``/dev/null``, as Lambda's stdout is a pipe), with and without the local JSON
Lines file. The SR figures are the extra cost of ``Accept: application/dicom``
on a warm function, and the one-off import of highdicom on the first SR request.
Writes ``bench/outputs.json``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, bench_env, fresh_process, python_of_runtime, warm

SR_COLD = (
    "import time, sys; sys.path.insert(0, 'layers/common')\n"
    "import json\n"
    "from medserve.registry import Registry\n"
    "e = Registry.load('layers/models', task='imaging', sessions=False).get('chest-xray')\n"
    "import pydicom; from pydicom.data import get_testdata_file\n"
    "ds = pydicom.dcmread(str(get_testdata_file('CT_small.dcm')))\n"
    "t0 = time.perf_counter()\n"
    "from medserve import sr\n"
    "out = sr.build(ds, e, {'label': 'pneumonia', 'probabilities': {'normal': 0.2, 'pneumonia': 0.8}})\n"
    "t1 = time.perf_counter()\n"
    "print(json.dumps({'init_ms': 0.0, 'first_response_ms': (t1 - t0) * 1000}))\n"
)


def bench_outputs(n: int = 2000) -> dict[str, Any]:
    """Time the audit sink, the provenance post-processor and the SR builder."""
    os.environ.update(bench_env())
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    from medserve import audit, provenance, sr
    from medserve.registry import Registry
    from medserve.tasks.imaging import fhir as imaging_fhir

    entry = Registry.load(ROOT / "layers" / "models", task="imaging", sessions=False).get("chest-xray")
    event = json.loads((ROOT / "events" / "imaging_dicom.json").read_text())
    sha = "ab" * 32
    results: dict[str, Any] = {}
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        os.environ.pop(audit.AUDIT_FILE_ENV, None)
        results["audit_record_only"] = warm(lambda: audit.api_record(event, 200, entry, sha, 1234, 10.0), n)
        results["audit_stdout"] = warm(lambda: audit.emit(audit.api_record(event, 200, entry, sha, 1234, 10.0)), n)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ[audit.AUDIT_FILE_ENV] = str(Path(tmp) / "audit.jsonl")
            results["audit_stdout_and_file"] = warm(
                lambda: audit.emit(audit.api_record(event, 200, entry, sha, 1234, 10.0)), n
            )
            os.environ.pop(audit.AUDIT_FILE_ENV)

    result = {
        "prediction": {"label": "pneumonia", "probabilities": {"normal": 0.2, "pneumonia": 0.8}},
        "heatmap": None,
        "warnings": [],
    }
    template = imaging_fhir.bundle(entry, result, "rid")
    results["provenance_label_and_attest"] = warm(
        lambda: provenance.label_and_attest(copy.deepcopy(template), input_sha256=sha), n // 4
    )
    results["deepcopy_of_bundle_baseline"] = warm(lambda: copy.deepcopy(template), n // 4)

    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    prediction = result["prediction"]
    cam = np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)
    results["sr_build"] = warm(lambda: sr.build(ds, entry, prediction), 50, warmup=3)
    results["sr_and_heatmap_capture_build"] = warm(lambda: sr.build(ds, entry, prediction, heatmap=cam), 50, warmup=3)
    results["sr_first_call_fresh_process"] = fresh_process(python_of_runtime(), SR_COLD, env=bench_env(), runs=3)
    results["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return results


def main() -> None:
    results = bench_outputs()
    (ROOT / "bench" / "outputs.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
