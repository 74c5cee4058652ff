"""medserve.tasks.imaging.service pure functions: request parsing and heatmap rendering (no model needed)."""

from __future__ import annotations

import base64
import copy
import json
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medserve.problems import Problem
from medserve.registry import ModelEntry
from medserve.tasks.imaging.decode import ImageSpec
from medserve.tasks.imaging.fhir import bundle as fhir_bundle
from medserve.tasks.imaging.service import HEATMAP_MAX_SIDE, heatmap, read_json_body, read_raw
from tests.conftest import live_folder

CHEST = live_folder("chest-xray") / "manifest.json"


def _png(hm: dict) -> np.ndarray:
    im = Image.open(BytesIO(base64.b64decode(hm["png"])))
    assert im.mode == "L" and im.size == (hm["width"], hm["height"])
    return np.asarray(im)


def test_heatmap_peak_lands_where_the_cam_peaks() -> None:
    cam = np.full((16, 16), -1.0, dtype=np.float32)
    cam[3, 12] = 4.0  # row 3, column 12
    hm = heatmap(cam, width=640, height=480)
    assert (hm["width"], hm["height"]) == (512, 384)
    img = _png(hm)
    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    assert img.max() == 255
    assert abs(ix / 512 - 12.5 / 16) < 0.05 and abs(iy / 384 - 3.5 / 16) < 0.05
    assert img[-1, 0] == 0  # negative evidence is not shown


def test_heatmap_of_no_positive_evidence_is_black() -> None:
    hm = heatmap(-np.ones((16, 16), dtype=np.float32), width=100, height=80)
    assert (hm["width"], hm["height"]) == (100, 80)  # never upscaled beyond the input
    assert _png(hm).max() == 0


@pytest.mark.parametrize(("w", "h"), [(5000, 4000), (64, 4096), (4096, 64)])
def test_heatmap_long_side_is_capped(w: int, h: int) -> None:
    hm = heatmap(np.ones((16, 16), dtype=np.float32), width=w, height=h)
    assert max(hm["width"], hm["height"]) == HEATMAP_MAX_SIDE
    assert abs(hm["width"] / hm["height"] - w / h) / (w / h) < 0.05


def test_read_raw_decodes_base64_and_explain_flag() -> None:
    req = read_raw(
        base64.b64encode(b"abc").decode(), is_base64=True, content_type="image/png", query={"explain": "true"}
    )
    assert (req.data, req.explain, req.field, req.declared) == (b"abc", True, "body", "image/png")
    req = read_raw("abc", is_base64=False, content_type="application/dicom", query=None)
    assert (req.data, req.explain) == (b"abc", False)


def test_read_raw_refuses_other_types_and_empty_bodies() -> None:
    with pytest.raises(Problem) as info:
        read_raw("abc", is_base64=False, content_type="text/plain", query=None)
    assert info.value.status == 415
    with pytest.raises(Problem) as info:
        read_raw("", is_base64=True, content_type="image/png", query=None)
    assert info.value.status == 422 and info.value.errors[0]["field"] == "body"


def test_read_json_body_collects_every_error() -> None:
    with pytest.raises(Problem) as info:
        read_json_body({"explain": "no", "extra": 1, "other": 2})
    fields = sorted(e["field"] for e in info.value.errors)
    assert info.value.status == 422 and fields == ["explain", "extra", "image", "other"]


def test_json_requests_take_explain_from_the_body_only() -> None:
    with pytest.raises(Problem) as info:
        read_json_body({"image": "AAAA"}, {"explain": "true"})
    assert info.value.errors[0]["field"] == "explain"


def test_image_spec_from_manifest() -> None:
    spec = ImageSpec.from_manifest(
        {"image": {"height": 224, "width": 192, "min_height": 100, "min_width": 90, "modalities": ["DX"]}}
    )
    assert (spec.height, spec.width, spec.min_height, spec.min_width, spec.modalities) == (224, 192, 100, 90, ("DX",))


# --- FHIR, from the manifest alone (no session needed) ------------------------------------
def other_model(tmp_path: Path, model_id: str, fhir: dict[str, str] | None = None) -> ModelEntry:
    """A copy of the chest-xray manifest turned into another imaging model (new id and labels)."""
    manifest: dict[str, Any] = copy.deepcopy(json.loads(CHEST.read_text()))
    manifest["id"] = model_id
    manifest["outputs"]["labels"] = ["no-fracture", "fracture"]
    manifest["outputs"]["positive_label"] = "fracture"
    manifest["outputs"]["threshold"] = 0.4
    manifest.pop("fhir", None)
    if fhir is not None:
        manifest["fhir"] = fhir
    return ModelEntry(tmp_path, manifest)


def bundle_for(entry: ModelEntry, heatmap_png: bool = False) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, Any] = {
        "prediction": {"label": "fracture", "probabilities": {"no-fracture": 0.3, "fracture": 0.7}},
        "heatmap": {"png": "iVBORw0KGgo=", "width": 410, "height": 512} if heatmap_png else None,
        "warnings": [],
    }
    bundle = fhir_bundle(entry, result, "req-1")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in bundle["entry"]:
        by_type.setdefault(item["resource"]["resourceType"], []).append(item["resource"])
    return by_type


def test_fhir_texts_of_a_new_model_come_from_its_id_and_labels(tmp_path: Path) -> None:
    by_type = bundle_for(other_model(tmp_path, "wrist-xray-test"))
    (report,) = by_type["DiagnosticReport"]
    (finding,) = [o for o in by_type["Observation"] if "valueCodeableConcept" in o]
    assert report["code"]["text"] == "AI image analysis by the wrist-xray-test model"
    assert finding["code"]["text"] == "AI image classification by the wrist-xray-test model (no-fracture vs fracture)"
    assert "chest" not in json.dumps(by_type).lower()


def test_fhir_texts_are_read_from_the_manifest_fhir_block(tmp_path: Path) -> None:
    texts = {"report_text": "AI analysis of a wrist radiograph", "finding_text": "AI wrist fracture classification"}
    by_type = bundle_for(other_model(tmp_path, "wrist-xray-texts", texts))
    (report,) = by_type["DiagnosticReport"]
    (finding,) = [o for o in by_type["Observation"] if "valueCodeableConcept" in o]
    assert (report["code"]["text"], finding["code"]["text"]) == (texts["report_text"], texts["finding_text"])


def test_diagnostic_report_has_no_device_performer(tmp_path: Path) -> None:
    # R4: DiagnosticReport.performer is Practitioner | PractitionerRole | Organization | CareTeam.
    by_type = bundle_for(other_model(tmp_path, "wrist-xray-performer"), heatmap_png=True)
    (report,) = by_type["DiagnosticReport"]
    (device,) = by_type["Device"]
    assert "performer" not in report and "subject" not in report
    assert report["presentedForm"][0]["contentType"] == "image/png"
    # the model is still named: every Observation's device points at the Device in the Bundle
    assert len(by_type["Observation"]) == 3
    assert all(o["device"] == {"reference": f"urn:uuid:{device['id']}"} for o in by_type["Observation"])
