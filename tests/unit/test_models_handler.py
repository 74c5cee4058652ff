"""ModelsFunction: health, catalogue, model detail, OpenAPI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from openapi_spec_validator import validate

from medserve.openapi import openapi_document
from medserve.registry import Registry
from tests.conftest import MODELS, invoke, live_folder, load_event

ALL_IDS = sorted(p.name for p in MODELS.iterdir() if p.is_dir() and any(p.glob("*/manifest.json")))


def test_health_lists_every_model() -> None:
    status, _, body = invoke("models", load_event("models_health"))
    assert status == 200
    assert body == {"status": "ok", "models": ALL_IDS}
    assert {"breast-cancer", "diabetes-progression"} <= set(ALL_IDS)


def test_models_lists_model_objects() -> None:
    status, _, body = invoke("models", load_event("models_list"))
    assert status == 200
    assert [m["id"] for m in body["models"]] == ALL_IDS
    for m in body["models"]:
        assert set(m) == {"id", "version", "task", "sha256", "synthetic", "intended_use"}
        assert m["task"] in {"risk", "imaging", "vitals"}
        assert len(m["sha256"]) == 64


def test_model_detail_has_inputs_outputs_metrics_and_card() -> None:
    status, _, body = invoke("models", load_event("models_get"))
    assert status == 200
    manifest = json.loads((live_folder("breast-cancer") / "manifest.json").read_text())
    assert body["id"] == "breast-cancer"
    assert [i["name"] for i in body["inputs"]] == [i["name"] for i in manifest["inputs"]]
    assert body["outputs"] == manifest["outputs"]
    assert body["metrics"]["auc"]["ci95"][0] <= body["metrics"]["auc"]["value"] <= body["metrics"]["auc"]["ci95"][1]
    assert "clinical use" in body["card"].lower()


def test_unknown_model_detail_is_404_problem() -> None:
    event = load_event("models_get")
    event["path"] = "/v1/models/nope"
    event["pathParameters"] = {"model_id": "nope"}
    status, headers, body = invoke("models", event)
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert body["request_id"] == event["requestContext"]["requestId"]


def test_post_to_models_is_405() -> None:
    event = load_event("models_list")
    event["httpMethod"] = "DELETE"
    status, headers, body = invoke("models", event)
    assert status == 405
    assert "GET" in headers["allow"]


def test_openapi_is_a_valid_document_of_every_route() -> None:
    status, _, doc = invoke("models", load_event("models_openapi"))
    assert status == 200
    validate(doc)
    assert set(doc["paths"]) == {
        "/v1/health",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/risk/{model_id}/predict",
        "/v1/imaging/{model_id}/predict",
        "/v1/vitals/{model_id}/predict",
        "/openapi.json",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    risk_enum = doc["paths"]["/v1/risk/{model_id}/predict"]["post"]["parameters"][0]["schema"]["enum"]
    assert {"breast-cancer", "diabetes-progression"} <= set(risk_enum)


def test_model_detail_lists_versions_with_their_status() -> None:
    status, _, body = invoke("models", load_event("models_get"))
    assert status == 200
    live = [v for v in body["versions"] if v["status"] == "live"]
    assert [v["version"] for v in live] == [body["version"]]
    assert all({"version", "sha256", "status", "created", "metrics"} <= set(v) for v in body["versions"])


def test_openapi_request_schemas_follow_the_manifests(tmp_path: Path) -> None:
    # Given a copy of the models where one risk model loses an input and a vitals range changes
    shutil.copytree(MODELS, tmp_path / "models", ignore=shutil.ignore_patterns("*.npz", "*.keras"))
    for bc in (tmp_path / "models" / "breast-cancer").glob("*/manifest.json"):  # every served version
        manifest = json.loads(bc.read_text())
        dropped = manifest["inputs"].pop()["name"]
        bc.write_text(json.dumps(manifest))
    for vt in (tmp_path / "models" / "vitals-deterioration").glob("*/manifest.json"):
        vitals = json.loads(vt.read_text())
        for feature in vitals["vitals"]["features"]:
            if feature["name"] == "heart_rate":
                feature["max"] = 250.0
        vt.write_text(json.dumps(vitals))
    # When the document is built from that registry
    doc = openapi_document(Registry.load(tmp_path / "models", sessions=False))
    validate(doc)
    # Then the risk request schema has exactly the new inputs, and vitals the new range
    post = doc["paths"]["/v1/risk/{model_id}/predict"]["post"]
    items = post["requestBody"]["content"]["application/json"]["schema"]["properties"]["instances"]["items"]
    variant = next(v for v in items["oneOf"] if v["title"] == "breast-cancer")
    assert variant["required"] == [i["name"] for i in manifest["inputs"]]
    assert dropped not in variant["properties"]
    vpost = doc["paths"]["/v1/vitals/{model_id}/predict"]["post"]
    vschema = vpost["requestBody"]["content"]["application/json"]["schema"]
    hr = vschema["properties"]["observations"]["items"]["properties"]["heart_rate"]
    assert hr["maximum"] == 250.0
