"""medserve.provenance on the real Bundles of all three tasks, validated by an independent FHIR library.

The validator is ``fhir.resources`` (pydantic models generated from the FHIR
StructureDefinitions). Its releases for pydantic 2 ship R5 and R4B (4.3.0), not
plain R4 (4.0.1), so the Bundles are validated against ``fhir.resources.R4B``:
R4B changed only the medication-definition, evidence and subscription modules and
added new types; Bundle, Device, RiskAssessment, DiagnosticReport, Observation,
Provenance and AuditEvent are the R4 definitions, and the Bundles use no type new
in R4B.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medserve import provenance, tasks
from medserve.registry import Registry
from medserve.tasks.base import HttpRequest
from tests.builders import risk_instance
from tests.conftest import MODELS, load_event

R4B = pytest.importorskip("fhir.resources.R4B.bundle")
REGISTRY = Registry.load(MODELS)
INPUT_SHA256 = hashlib.sha256(b"the request body").hexdigest()
RECORDED = "2026-11-30T12:00:00Z"


def _png() -> bytes:
    buf = BytesIO()
    pixels = (np.add.outer(np.arange(96), np.arange(96)) % 256).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def build_bundle(model_id: str) -> dict[str, Any]:
    """The Bundle the current code builds for one prediction of this model (through its task)."""
    entry = REGISTRY.get(model_id)
    task = tasks.get(entry.task)
    if entry.task == "imaging":
        body = json.dumps({"image": base64.b64encode(_png()).decode(), "explain": True})
    elif entry.task == "vitals":
        body = load_event("vitals_predict")["body"]
    else:
        body = json.dumps({"instances": [risk_instance(model_id)], "explain": True})
    parsed = task.parse(entry, HttpRequest(body, content_type="application/json"))
    return task.fhir(entry, parsed, task.predict(entry, [parsed])[0], f"rid-{entry.task}")


MODEL_IDS = sorted(e.id for e in REGISTRY.entries())


def test_every_task_is_covered() -> None:
    assert {REGISTRY.get(m).task for m in MODEL_IDS} == {"risk", "imaging", "vitals"}


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_bundles_validate_as_fhir_before_and_after(model_id: str) -> None:
    bundle = build_bundle(model_id)
    R4B.Bundle.model_validate(copy.deepcopy(bundle))
    provenance.label_and_attest(bundle, input_sha256=INPUT_SHA256, recorded=RECORDED)
    validated = R4B.Bundle.model_validate(bundle)
    assert validated.entry is not None and len(validated.entry) == len(bundle["entry"])


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_resource_is_labelled_ai_asserted(model_id: str) -> None:
    bundle = provenance.label_and_attest(build_bundle(model_id), input_sha256=INPUT_SHA256)
    for resource in [bundle, *(e["resource"] for e in bundle["entry"])]:
        labels = [s for s in resource["meta"]["security"] if s["code"] == "AIAST"]
        assert labels == [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "AIAST",
                "display": "Artificial Intelligence asserted",
            }
        ], resource["resourceType"]


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_provenance_targets_results_agent_is_the_device_entity_is_the_input_hash(model_id: str) -> None:
    entry = REGISTRY.get(model_id)
    bundle = provenance.label_and_attest(
        build_bundle(model_id), input_sha256=INPUT_SHA256, recorded=RECORDED, api_base="https://api.example/Prod/"
    )
    by_type: dict[str, list[dict[str, Any]]] = {}
    urls = {}
    for item in bundle["entry"]:
        by_type.setdefault(item["resource"]["resourceType"], []).append(item["resource"])
        urls[item["resource"]["id"]] = item["fullUrl"]
    (prov,) = by_type["Provenance"]
    (device,) = by_type["Device"]
    results = [r for t, rs in by_type.items() if t not in ("Device", "Provenance") for r in rs]
    assert results and {t["reference"] for t in prov["target"]} == {urls[r["id"]] for r in results}
    (agent,) = prov["agent"]
    assert agent["who"]["reference"] == urls[device["id"]]
    assert agent["type"]["coding"][0]["code"] == "performer"
    assert any(entry.sha256 in i["value"] for i in device["identifier"])  # the Device carries the sha256
    (entity,) = prov["entity"]
    assert entity["role"] == "source"
    assert entity["what"]["identifier"]["value"] == f"sha256:{INPUT_SHA256}"
    assert prov["recorded"] == RECORDED
    assert prov["policy"] == [f"https://api.example/Prod/v1/models/{entry.id}?version={entry.version}#card"]


def test_recorded_defaults_to_the_bundle_time_and_policy_to_a_urn() -> None:
    bundle = provenance.label_and_attest(build_bundle("breast-cancer"), input_sha256=INPUT_SHA256)
    prov = bundle["entry"][-1]["resource"]
    assert prov["recorded"] == bundle["timestamp"]
    entry = REGISTRY.get("breast-cancer")
    assert prov["policy"] == [f"urn:medserve:model-card:{entry.id}:{entry.version}"]


def test_post_processing_twice_changes_nothing() -> None:
    once = provenance.label_and_attest(build_bundle("chest-xray"), input_sha256=INPUT_SHA256, recorded=RECORDED)
    twice = provenance.label_and_attest(copy.deepcopy(once), input_sha256=INPUT_SHA256, recorded=RECORDED)
    assert twice == once


def test_a_bundle_without_a_model_device_is_refused() -> None:
    bundle = build_bundle("breast-cancer")
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Device"]
    with pytest.raises(ValueError, match="Device"):
        provenance.label_and_attest(bundle, input_sha256=INPUT_SHA256)


def test_the_validator_catches_a_broken_provenance() -> None:
    """The validation above can fail: a Provenance without its required ``recorded`` is refused."""
    bundle = provenance.label_and_attest(build_bundle("breast-cancer"), input_sha256=INPUT_SHA256)
    del bundle["entry"][-1]["resource"]["recorded"]
    with pytest.raises(ValueError, match="recorded"):
        R4B.Bundle.model_validate(bundle)
