"""ImagingFunction fed real-shaped API Gateway REST events (Given/When/Then).

Uses the committed ``layers/models/chest-xray`` model and ``events/imaging_*.json``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
from io import BytesIO
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from medserve.api import SYNTHETIC_WARNING
from medserve.registry import Registry
from medserve.tasks.imaging.decode import ImageSpec, decode_image, to_model_input
from tests import builders
from tests.builders import PHI, jpeg_bytes, make_dicom, phi_parts, png_bytes, png_with_size, ramp
from tests.conftest import MODELS, ROOT, invoke, live_folder, load_event

PNG_EVENT = load_event("imaging_png")
JSON_EVENT = load_event("imaging_json")
DICOM_EVENT = load_event("imaging_dicom")
MODEL_DIR = live_folder("chest-xray")
MANIFEST = json.loads((MODEL_DIR / "manifest.json").read_text())
SPEC = ImageSpec.from_manifest(MANIFEST)


def raw_event(data: bytes, content_type: str, query: dict[str, str] | None = None, **headers: str) -> dict:
    """The PNG event re-filled with other bytes / Content-Type / query (API Gateway binary shape)."""
    return builders.raw_event(PNG_EVENT, data, content_type, query, **headers)


def json_event(body: Any, query: dict[str, str] | None = None, **headers: str) -> dict:
    return builders.json_event(JSON_EVENT, body, query, **headers)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def event_bytes(event: dict) -> bytes:
    if event["isBase64Encoded"]:
        return base64.b64decode(event["body"])
    return base64.b64decode(json.loads(event["body"])["image"])


def raw_onnx(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode + ONNX Runtime directly, bypassing the handler."""
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    x = to_model_input(decode_image(data, spec=SPEC).pixels, SPEC)
    probs, cam = session.run(["probabilities", "cam"], {"image": x})
    return probs[0], cam[0]


def assert_problem(status: int, headers: dict, body: dict, expected: int, field: str | None = None) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail", "request_id"} <= set(body)
    assert body["status"] == expected
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body


# --- success -----------------------------------------------------------------------------
@pytest.mark.parametrize("event", [PNG_EVENT, JSON_EVENT, DICOM_EVENT], ids=["png", "json", "dicom"])
def test_prediction_has_the_contract_shape_and_matches_onnx_runtime(event: dict) -> None:
    status, headers, body = invoke("imaging", event)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"model", "request_id", "prediction", "heatmap", "warnings"}
    assert body["model"] == {
        "id": "chest-xray",
        "version": MANIFEST["version"],
        "task": "imaging",
        "sha256": MANIFEST["onnx"]["sha256"],
        "synthetic": MANIFEST["synthetic"],
        "intended_use": MANIFEST["intended_use"],
    }
    assert body["request_id"] == event["requestContext"]["requestId"]
    pred = body["prediction"]
    assert set(pred) == {"label", "probabilities"}
    assert list(pred["probabilities"]) == MANIFEST["outputs"]["labels"]
    assert math.isclose(sum(pred["probabilities"].values()), 1.0, abs_tol=1e-5)
    expected, _ = raw_onnx(event_bytes(event))
    np.testing.assert_allclose(list(pred["probabilities"].values()), expected, atol=1e-6)
    p = pred["probabilities"]["pneumonia"]
    assert pred["label"] == ("pneumonia" if p >= MANIFEST["outputs"]["threshold"] else "normal")
    if MANIFEST["synthetic"]:
        assert body["warnings"][0] == SYNTHETIC_WARNING


def test_png_event_with_explain_returns_the_cam_as_png() -> None:
    status, _, body = invoke("imaging", PNG_EVENT)
    assert status == 200
    hm = body["heatmap"]
    assert set(hm) == {"png", "width", "height"}
    im = Image.open(BytesIO(base64.b64decode(hm["png"])))
    assert (im.format, im.mode, im.size) == ("PNG", "L", (hm["width"], hm["height"]))
    assert (hm["width"], hm["height"]) == (128, 128)  # the event's image is 128x128
    # where the in-graph CAM is largest, the heatmap is brightest
    _, cam = raw_onnx(event_bytes(PNG_EVENT))
    heat = np.asarray(im, dtype=np.float64)
    if cam.max() > 0:
        iy, ix = np.unravel_index(np.argmax(cam), cam.shape)
        cell = heat[iy * 8 : (iy + 1) * 8, ix * 8 : (ix + 1) * 8]
        assert cell.max() >= 0.9 * heat.max() and heat.max() >= 250
    else:
        assert heat.max() == 0


def test_explain_false_and_json_give_no_heatmap() -> None:
    assert invoke("imaging", JSON_EVENT)[2]["heatmap"] is None
    assert invoke("imaging", DICOM_EVENT)[2]["heatmap"] is None
    body = invoke("imaging", raw_event(event_bytes(PNG_EVENT), "image/png", {"explain": "false"}))[2]
    assert body["heatmap"] is None


@pytest.mark.parametrize(("w", "h", "hw", "hh"), [(1000, 600, 512, 307), (300, 900, 171, 512), (200, 100, 200, 100)])
def test_heatmap_keeps_the_input_aspect_ratio(w: int, h: int, hw: int, hh: int) -> None:
    data = png_bytes(ramp(h, w).astype(np.uint8))
    status, _, body = invoke("imaging", json_event({"image": b64(data), "explain": True}))
    assert status == 200, body
    assert (body["heatmap"]["width"], body["heatmap"]["height"]) == (hw, hh)
    im = Image.open(BytesIO(base64.b64decode(body["heatmap"]["png"])))
    assert im.size == (hw, hh)


def test_large_dicom_heatmap_keeps_the_original_aspect_ratio() -> None:
    # decoded at a reduced size (about 3-6x the model input), reported at the original geometry
    dcm = make_dicom(bits=12, pixels=ramp(2500, 2000, top=4095), window=(2048.0, 4096.0))
    assert decode_image(dcm, spec=SPEC).pixels.shape[0] < 1000
    status, _, body = invoke("imaging", raw_event(dcm, "application/dicom", {"explain": "true"}))
    assert status == 200, body
    assert (body["heatmap"]["width"], body["heatmap"]["height"]) == (410, 512)  # 2000x2500 scaled to 512


def test_json_explain_true_returns_heatmap_and_same_prediction() -> None:
    data = event_bytes(JSON_EVENT)
    plain = invoke("imaging", json_event({"image": b64(data)}))[2]
    explained = invoke("imaging", json_event({"image": b64(data), "explain": True}))[2]
    assert explained["prediction"] == plain["prediction"]
    assert plain["heatmap"] is None and explained["heatmap"]["width"] == 96


def test_format_comes_from_the_bytes_not_the_header() -> None:
    png = event_bytes(PNG_EVENT)
    status, _, body = invoke("imaging", raw_event(png, "application/dicom"))
    assert status == 200, body
    assert any("bytes are PNG" in w for w in body["warnings"])
    expected, _ = raw_onnx(png)
    np.testing.assert_allclose(list(body["prediction"]["probabilities"].values()), expected, atol=1e-6)


def test_jpeg_and_colour_images_are_served() -> None:
    arr = np.stack([ramp(160, 160).astype(np.uint8)] * 3, axis=-1)
    status, _, body = invoke("imaging", raw_event(jpeg_bytes(arr), "image/jpeg"))
    assert status == 200, body


def test_dicom_event_response_and_logs_carry_no_patient_identifiers(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    texts = []
    for accept in ("application/json", "application/fhir+json"):
        ev = json.loads(json.dumps(DICOM_EVENT))
        ev["headers"]["Accept"] = accept
        ev["queryStringParameters"] = {"explain": "true"}
        status, _, body = invoke("imaging", ev)
        assert status == 200, body
        texts.append(json.dumps(body))
    bad = make_dicom(modality="CT")  # a refused file also must not echo identifiers
    status, _, body = invoke("imaging", raw_event(bad, "application/dicom"))
    assert status == 422
    texts.append(json.dumps(body))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    blob = "\n".join(texts)
    # the event really carries identifiers (so this test can fail)
    assert PHI["PatientID"].encode() in event_bytes(DICOM_EVENT)
    for part in phi_parts():
        assert part not in blob, f"patient data {part!r} leaked"


# --- FHIR --------------------------------------------------------------------------------
def test_fhir_bundle_has_report_observations_and_device() -> None:
    ev = raw_event(event_bytes(PNG_EVENT), "image/png", {"explain": "true"}, Accept="application/fhir+json")
    status, headers, bundle = invoke("imaging", ev)
    assert status == 200, bundle
    assert headers["content-type"] == "application/fhir+json"
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    by_type: dict[str, list[dict]] = {}
    urls = set()
    for entry in bundle["entry"]:
        res = entry["resource"]
        assert entry["fullUrl"] == f"urn:uuid:{res['id']}"
        urls.add(entry["fullUrl"])
        by_type.setdefault(res["resourceType"], []).append(res)
    assert set(by_type) == {"DiagnosticReport", "Observation", "Device", "Provenance"}
    (report,) = by_type["DiagnosticReport"]
    (device,) = by_type["Device"]
    assert report["status"] == "preliminary"
    assert "subject" not in report
    assert report["identifier"][0]["value"] == ev["requestContext"]["requestId"]
    assert {r["reference"] for r in report["result"]} == {f"urn:uuid:{o['id']}" for o in by_type["Observation"]}
    assert all(r["reference"] in urls for r in report["result"])
    # R4 DiagnosticReport.performer takes Practitioner(Role), Organization or CareTeam, never a
    # Device: the model is named by each Observation's `device` (checked below) instead.
    assert "performer" not in report
    texts = MANIFEST.get("fhir", {})
    assert report["code"]["text"] == texts.get("report_text", "AI image analysis by the chest-xray model")
    assert any(i["value"] == f"urn:sha256:{MANIFEST['onnx']['sha256']}" for i in device["identifier"])
    assert report["presentedForm"][0]["contentType"] == "image/png"
    # one finding with the label and an interpretation, one probability per label
    json_body = invoke("imaging", raw_event(event_bytes(PNG_EVENT), "image/png"))[2]
    findings = [o for o in by_type["Observation"] if "valueCodeableConcept" in o]
    assert len(findings) == 1
    assert findings[0]["valueCodeableConcept"]["text"] == json_body["prediction"]["label"]
    assert findings[0]["interpretation"][0]["coding"][0]["code"] in {"POS", "NEG"}
    probs = {o["code"]["text"]: o["valueQuantity"]["value"] for o in by_type["Observation"] if "valueQuantity" in o}
    assert probs == {f"AI-estimated probability of {k}": v for k, v in json_body["prediction"]["probabilities"].items()}
    assert all(
        o["status"] == "preliminary" and o["device"]["reference"] == f"urn:uuid:{device['id']}"
        for o in by_type["Observation"]
    )


# --- errors ------------------------------------------------------------------------------
def test_unreadable_json_is_400() -> None:
    assert_problem(*invoke("imaging", json_event("{not json")), 400)


def test_missing_image_is_422() -> None:
    assert_problem(*invoke("imaging", json_event({"explain": True})), 422, "image")


def test_extra_field_is_422() -> None:
    data = b64(event_bytes(JSON_EVENT))
    assert_problem(*invoke("imaging", json_event({"image": data, "patient": "x"})), 422, "patient")


@pytest.mark.parametrize("explain", ["true", 1, None, "yes"])
def test_explain_must_be_a_boolean(explain: Any) -> None:
    data = b64(event_bytes(JSON_EVENT))
    assert_problem(*invoke("imaging", json_event({"image": data, "explain": explain})), 422, "explain")


@pytest.mark.parametrize("image", ["%%%not-base64%%%", "abc", 42, ""])
def test_bad_base64_image_is_422_naming_image(image: Any) -> None:
    assert_problem(*invoke("imaging", json_event({"image": image})), 422, "image")


@pytest.mark.parametrize("value", ["1", "True", "yes", ""])
def test_query_explain_only_true_or_false(value: str) -> None:
    ev = raw_event(event_bytes(PNG_EVENT), "image/png", {"explain": value})
    assert_problem(*invoke("imaging", ev), 422, "explain")


def test_unknown_query_parameter_is_422() -> None:
    ev = raw_event(event_bytes(PNG_EVENT), "image/png", {"explian": "true"})
    status, headers, body = invoke("imaging", ev)
    assert_problem(status, headers, body, 422, "query")
    assert "explian" not in json.dumps(body)  # a name the caller sent is not repeated


@pytest.mark.parametrize("ctype", ["text/plain", "image/gif", "application/octet-stream", "multipart/form-data"])
def test_other_content_types_are_415(ctype: str) -> None:
    assert_problem(*invoke("imaging", raw_event(event_bytes(PNG_EVENT), ctype)), 415)


def test_garbage_bytes_are_415_naming_body_or_image() -> None:
    garbage = b"GIF89a" + bytes(range(256))
    assert_problem(*invoke("imaging", raw_event(garbage, "image/png")), 415, "body")
    assert_problem(*invoke("imaging", json_event({"image": b64(garbage)})), 415, "image")


def test_raw_body_that_is_not_base64_is_400() -> None:
    ev = raw_event(b"x", "image/png")
    ev["body"] = "%%% definitely not base64 %%%"
    assert_problem(*invoke("imaging", ev), 400, "body")


def test_too_small_image_is_422() -> None:
    small = png_bytes(np.zeros((40, 40), dtype=np.uint8))
    assert_problem(*invoke("imaging", raw_event(small, "image/png")), 422, "body")


def test_decompression_bomb_is_413() -> None:
    assert_problem(*invoke("imaging", raw_event(png_with_size(9000, 9000), "image/png")), 413, "body")


@pytest.mark.parametrize(
    ("make", "status", "field"),
    [
        (lambda: make_dicom(modality="CT"), 422, "dicom.Modality"),
        (lambda: make_dicom(frames=2), 422, "body"),
        (lambda: make_dicom(with_pixels=False), 422, "body"),
    ],
)
def test_refused_dicoms_through_the_handler(make: Any, status: int, field: str) -> None:
    assert_problem(*invoke("imaging", raw_event(make(), "application/dicom")), status, field)


def test_unknown_model_is_404() -> None:
    ev = raw_event(event_bytes(PNG_EVENT), "image/png")
    ev["path"] = "/v1/imaging/no-such-model/predict"
    ev["pathParameters"] = {"model_id": "no-such-model"}
    assert_problem(*invoke("imaging", ev), 404)


def test_model_of_another_task_is_404_on_the_imaging_route() -> None:
    others = [e.id for e in Registry.load(MODELS, sessions=False).entries() if e.task != "imaging"]
    assert others, "no non-imaging model in layers/models to test with"
    ev = raw_event(event_bytes(PNG_EVENT), "image/png")
    ev["path"] = f"/v1/imaging/{others[0]}/predict"
    ev["pathParameters"] = {"model_id": others[0]}
    assert_problem(*invoke("imaging", ev), 404)


def test_get_is_405() -> None:
    ev = json.loads(json.dumps(JSON_EVENT))
    ev["httpMethod"] = "GET"
    ev["body"] = None
    status, headers, body = invoke("imaging", ev)
    assert_problem(status, headers, body, 405)


# --- cold start --------------------------------------------------------------------------
def test_png_requests_never_import_pydicom() -> None:
    script = """
import json, sys
from tests.conftest import load_event, load_handler, FakeContext
handler = load_handler("imaging")
assert "pydicom" not in sys.modules, "pydicom imported at init"
resp = handler.lambda_handler(load_event("imaging_png"), FakeContext())
assert resp["statusCode"] == 200, resp
assert "pydicom" not in sys.modules, "pydicom imported by a PNG request"
resp = handler.lambda_handler(load_event("imaging_dicom"), FakeContext())
assert resp["statusCode"] == 200, resp
assert "pydicom" in sys.modules
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "common")])}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
