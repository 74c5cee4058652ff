"""Batch outputs beside the JSON result: a DICOM SR on request, and one audit record per object."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medserve import audit
from tests.builders import PHI, make_dicom, png_bytes, ramp
from tests.integration.conftest import OUTPUT, BatchStack


def test_an_sr_prefix_writes_a_dicom_sr_beside_the_json_result(stack: BatchStack) -> None:
    dcm = make_dicom(modality="DX", pixels=ramp(height=128, width=128, top=4095), bits=12)
    source = pydicom.dcmread(io.BytesIO(dcm))
    stack.put("incoming/chest-xray/sr/scan.dcm", dcm)
    stack.put("incoming/chest-xray/plain.dcm", dcm)
    stack.drain()
    keys = stack.keys("results/")
    assert "results/chest-xray/sr/scan.dcm.json" in keys
    assert "results/chest-xray/sr/scan.sr.dcm" in keys
    assert not [k for k in keys if k.startswith("results/chest-xray/plain") and k.endswith(".sr.dcm")]
    sr = pydicom.dcmread(
        io.BytesIO(stack.s3.get_object(Bucket=OUTPUT, Key="results/chest-xray/sr/scan.sr.dcm")["Body"].read())
    )
    assert sr.Modality == "SR" and sr.StudyInstanceUID == source.StudyInstanceUID
    assert str(sr.PatientName) == PHI["PatientName"]
    assert stack.content_type("results/chest-xray/sr/scan.sr.dcm") == "application/dicom"


def test_a_png_under_the_sr_prefix_gets_its_result_and_a_warning(stack: BatchStack) -> None:
    stack.put("incoming/chest-xray/sr/image.png", png_bytes(ramp(height=128, width=128).astype(np.uint8)))
    stack.drain()
    doc = stack.doc("results/chest-xray/sr/image.png.json")
    assert any("no DICOM SR" in w for w in doc["warnings"])
    assert not [k for k in stack.keys("results/") if k.endswith(".sr.dcm")]


def test_every_final_outcome_leaves_one_audit_record_without_the_key(
    stack: BatchStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.AUDIT_FILE_ENV, str(log))
    stack.drain()  # moto's s3:TestEvent: not an object, no record
    log.unlink(missing_ok=True)
    stack.put("incoming/breast-cancer/Doe-Jane-rows.csv", "id,mean_radius\nx,1\n")  # a header refused whole: 422
    stack.put("incoming/no-such-model/Doe-Jane.csv", "a\n1\n")  # 404
    stack.drain()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 2
    assert sorted(r["outcome"] for r in records) == ["4", "4"]
    assert "Doe" not in log.read_text()
