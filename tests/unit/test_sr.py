"""medserve.sr: the TID 1500 SR and the heatmap Secondary Capture, read back with pydicom and highdicom."""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from medserve import sr
from medserve.problems import Problem
from medserve.registry import Registry
from medserve.tasks.imaging.service import heatmap
from tests.conftest import MODELS

CANARY = "ZZCANARY^QX7"
DX_FOR_PRESENTATION = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.1.1")
ENTRY = Registry.load(MODELS, task="imaging", sessions=False).get("chest-xray", task="imaging")
PREDICTION: dict[str, Any] = {"label": "pneumonia", "probabilities": {"normal": 0.125, "pneumonia": 0.875}}

hd = pytest.importorskip("highdicom")


@pytest.fixture
def source() -> Dataset:
    """A small real DICOM image made to look like a DX radiograph, with a canary patient name."""
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.Modality = "DX"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    ds.PatientName = CANARY
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    return ds


def _walk(items: Any) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _named(ds: Dataset, code: str) -> list[Dataset]:
    return [i for i in _walk(ds.ContentSequence) if i.ConceptNameCodeSequence[0].CodeValue == code]


def test_sr_is_a_tid1500_report_in_the_source_study(source: Dataset) -> None:
    out = sr.build(source, ENTRY, PREDICTION)
    ds = pydicom.dcmread(BytesIO(out.sr))
    assert ds.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage and ds.Modality == "SR"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    # same study, copied Patient and Study modules, new series and instance
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert (ds.PatientName, ds.PatientID, ds.StudyID) == (CANARY, source.PatientID, source.StudyID)
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SOPInstanceUID not in (source.SOPInstanceUID, ds.SeriesInstanceUID)
    assert ds.PreliminaryFlag == "PRELIMINARY" and ds.VerificationFlag == "UNVERIFIED"
    # the source image is in the evidence
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    ref = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)


def test_sr_content_tree_read_back_with_highdicom(source: Dataset) -> None:
    report = hd.sr.srread(BytesIO(sr.build(source, ENTRY, PREDICTION).sr))
    assert isinstance(report, hd.sr.Comprehensive3DSR)
    groups = report.content.get_image_measurement_groups()
    by_finding = {g.finding_type.meaning: g for g in groups}
    assert set(by_finding) == {"Normal", "Pneumonia"}
    pneumonia = by_finding["Pneumonia"]
    assert (pneumonia.finding_type.value, pneumonia.finding_type.scheme_designator) == ("233604007", "SCT")
    for meaning, label in (("Normal", "normal"), ("Pneumonia", "pneumonia")):
        (m,) = by_finding[meaning].get_measurements()
        assert (m.name.value, m.name.scheme_designator) == ("122157", "DCM")  # Probability
        assert m.value == pytest.approx(PREDICTION["probabilities"][label])
        assert (m.unit.value, m.unit.scheme_designator) == ("1", "UCUM")
        (image,) = by_finding[meaning].source_images
        assert image.referenced_sop_instance_uid == source.SOPInstanceUID
        assert image.referenced_sop_class_uid == source.SOPClassUID
    (decision,) = pneumonia.get_qualitative_evaluations()
    assert decision.name.value == "233604007" and decision.value.meaning == "Present"  # 0.875 >= threshold
    assert by_finding["Normal"].get_qualitative_evaluations() == []


def test_sr_decision_below_threshold_is_absent(source: Dataset) -> None:
    low = {"label": "normal", "probabilities": {"normal": 0.9, "pneumonia": 0.1}}
    report = hd.sr.srread(BytesIO(sr.build(source, ENTRY, low).sr))
    (pneumonia,) = [g for g in report.content.get_image_measurement_groups() if g.finding_type.meaning == "Pneumonia"]
    assert pneumonia.get_qualitative_evaluations()[0].value.meaning == "Absent"


def test_sr_identifies_the_algorithm_and_the_device_observer(source: Dataset) -> None:
    ds = pydicom.dcmread(BytesIO(sr.build(source, ENTRY, PREDICTION).sr))
    names = {i.TextValue for i in _named(ds, "111001")}  # Algorithm Name (TID 4019)
    versions = {i.TextValue for i in _named(ds, "111003")}  # Algorithm Version
    parameters = {i.TextValue for i in _named(ds, "111002")}  # Algorithm Parameters
    assert names == {ENTRY.id} and versions == {ENTRY.version}
    assert f"sha256:{ENTRY.sha256}" in parameters
    observer_type = _named(ds, "121005")[0].ConceptCodeSequence[0]
    assert (observer_type.CodeValue, observer_type.CodeMeaning) == ("121007", "Device")
    assert _named(ds, "121012")[0].UID == sr.device_uid(ENTRY.sha256)  # Device Observer UID
    assert _named(ds, "121013")[0].TextValue == ENTRY.id  # Device Observer Name
    # the image library references the source
    (library_image,) = [i for i in _walk(ds.ContentSequence) if i.ValueType == "IMAGE" and "ContentSequence" in i]
    assert library_image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_a_radiograph_without_orientation_still_gets_a_report(source: Dataset) -> None:
    del source.PatientOrientation, source.ImagerPixelSpacing  # common in CR/DX files: no image library then
    ds = pydicom.dcmread(BytesIO(sr.build(source, ENTRY, PREDICTION).sr))
    assert not _named(ds, "111028")  # Image Library
    groups = hd.sr.srread(BytesIO(sr.build(source, ENTRY, PREDICTION).sr)).content.get_image_measurement_groups()
    assert {g.source_images[0].referenced_sop_instance_uid for g in groups} == {source.SOPInstanceUID}


def test_device_uid_is_stable_per_model_version_and_valid() -> None:
    uid = sr.device_uid(ENTRY.sha256)
    assert uid == sr.device_uid(ENTRY.sha256) and uid != sr.device_uid("0" * 64)
    assert pydicom.uid.UID(uid).is_valid


def test_unknown_labels_get_private_codes_and_manifest_codes_win() -> None:
    assert sr.finding_code("opacity").scheme_designator == sr.PRIVATE_SCHEME
    custom = sr.finding_code("opacity", {"dicom": {"findings": {"opacity": ["263654008", "SCT", "Abnormal"]}}})
    assert (custom.value, custom.scheme_designator, custom.meaning) == ("263654008", "SCT", "Abnormal")


def test_heatmap_capture_overlays_the_source(source: Dataset) -> None:
    cam = np.full((16, 16), -1.0, dtype=np.float32)
    cam[2, 13] = 3.0
    out = sr.build(source, ENTRY, PREDICTION, heatmap=cam)
    assert out.heatmap is not None
    sc = pydicom.dcmread(BytesIO(out.heatmap))
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PatientName == CANARY
    assert sc.SeriesInstanceUID not in (source.SeriesInstanceUID, pydicom.dcmread(BytesIO(out.sr)).SeriesInstanceUID)
    assert (sc.Rows, sc.Columns) == (source.Rows, source.Columns)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    pixels = sc.pixel_array
    assert pixels.dtype == np.uint8 and pixels.max() == 255
    y, x = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert abs(x / source.Columns - 13.5 / 16) < 0.07 and abs(y / source.Rows - 2.5 / 16) < 0.07
    assert pixels[-1, 0] == 0  # negative evidence is not drawn
    assert hd.imread(BytesIO(out.heatmap)).get_frame(1).shape == (source.Rows, source.Columns)


def test_the_routes_rendered_png_heatmap_is_accepted(source: Dataset) -> None:
    cam = np.full((16, 16), -1.0, dtype=np.float32)
    cam[12, 3] = 2.0
    rendered = heatmap(cam, width=int(source.Columns), height=int(source.Rows))  # what the imaging route returns
    out = sr.build(source, ENTRY, PREDICTION, heatmap=rendered)
    assert out.heatmap is not None
    pixels = pydicom.dcmread(BytesIO(out.heatmap)).pixel_array
    y, x = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert abs(x / source.Columns - 3.5 / 16) < 0.07 and abs(y / source.Rows - 12.5 / 16) < 0.07


def test_sr_from_bytes_equals_from_dataset(source: Dataset) -> None:
    buf = BytesIO()
    source.save_as(buf, enforce_file_format=True)
    ds = pydicom.dcmread(BytesIO(sr.build(buf.getvalue(), ENTRY, PREDICTION).sr))
    assert ds.PatientName == CANARY and ds.StudyInstanceUID == source.StudyInstanceUID


def test_multipart_related_parses_with_the_stdlib(source: Dataset) -> None:
    out = sr.build(source, ENTRY, PREDICTION, heatmap=np.ones((16, 16), dtype=np.float32))
    body, content_type = out.body()
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart() and message.get_content_type() == "multipart/related"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/dicom", "application/dicom"]
    payloads = [p.get_payload(decode=True) for p in parts]
    assert payloads == [out.sr, out.heatmap]
    assert pydicom.dcmread(BytesIO(payloads[0])).Modality == "SR"


def test_bytes_that_are_not_dicom_are_a_422_problem() -> None:
    with pytest.raises(Problem) as refused:
        sr.build(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, ENTRY, PREDICTION, field="body")
    assert refused.value.status == 422


def test_without_heatmap_the_body_is_the_sr_alone(source: Dataset) -> None:
    out = sr.build(source, ENTRY, PREDICTION)
    assert out.heatmap is None and out.body() == (out.sr, "application/dicom")


def test_canary_is_in_the_sr_and_in_no_log_record(source: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the whole root, every logger
    pydicom.config.debug(True)  # pydicom at its chattiest: silence_dicom_logging must still win
    try:
        out = sr.build(source, ENTRY, PREDICTION, heatmap=np.ones((16, 16), dtype=np.float32))
        hd.sr.srread(BytesIO(out.sr))
        # a source whose patient name breaks its VR rule, so pydicom would warn quoting it
        bad = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
        with pytest.warns(UserWarning, match="exceeds the maximum allowed length"):
            bad.PatientName = CANARY + "x" * 80  # too long for a PN component
        sr.build(bad, ENTRY, PREDICTION)
        bad.PatientName = CANARY + "\\" + CANARY  # multi-valued: highdicom refuses it
        with pytest.raises(Problem) as refused:
            sr.build(bad, ENTRY, PREDICTION, field="image")
    finally:
        pydicom.config.debug(False)
        sr.silence_dicom_logging()  # debug(False) gave pydicom back a WARNING level
    assert CANARY.encode() in out.sr and out.heatmap is not None and CANARY.encode() in out.heatmap
    leaked = [r for r in caplog.records if CANARY in r.getMessage() or CANARY in str(r.args)]
    assert not leaked
    assert CANARY not in caplog.text
    assert refused.value.status == 422 and CANARY not in json.dumps(refused.value.to_dict())
    assert refused.value.__cause__ is None and "image" in json.dumps(refused.value.to_dict())


def test_importing_the_output_modules_loads_no_dicom_library() -> None:
    code = (
        "import sys\n"
        "import medserve.sr, medserve.audit, medserve.provenance\n"
        "print(sorted(m for m in ('pydicom', 'highdicom') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'layers' / 'common'}{os.pathsep}{root}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"
