"""AI transparency for every FHIR Bundle MedServe makes: the AIAST label and a Provenance.

:func:`label_and_attest` post-processes a ``collection`` Bundle built by any task
(each task's ``Task.fhir``):

- every resource (the Bundle itself included) gets the HL7 AI-asserted security
  label in ``meta.security`` (system ``v3-ObservationValue``, code ``AIAST``), as the
  HL7 "AI Transparency on FHIR" guide recommends;
- one ``Provenance`` is appended, whose ``target`` is every result resource (all
  but Device and Provenance), whose ``agent`` is the model ``Device`` (type
  ``performer``, ``who`` = the Device), whose ``entity`` is
  the input identified by its sha256 only (role ``source``), whose ``recorded`` is
  the prediction time, and whose ``policy`` links the model card.

No patient data is read or added: the input appears only as ``sha256:<hex>``.
"""

from __future__ import annotations

from typing import Any

from medserve import fhir

AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
"""The HL7 security label for information asserted by an AI."""
INPUT_SYSTEM = "https://medserve.dev/fhir/input-sha256"
"""Identifier system of a request's input: the value is ``sha256:<hex>`` of the bytes received."""
_PROVENANCE_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_NOT_TARGETS = frozenset({"Device", "Provenance"})


def card_policy(model_id: str, version: str, api_base: str | None = None) -> str:
    """Where the model card of a version lives: ``<api>/v1/models/<id>?version=<v>#card``.

    Without an API base URL (a batch result, a test) it is the URN
    ``urn:medserve:model-card:<id>:<version>``.
    """
    if api_base:
        return f"{api_base.rstrip('/')}/v1/models/{model_id}?version={version}#card"
    return f"urn:medserve:model-card:{model_id}:{version}"


def label(resource: dict[str, Any]) -> dict[str, Any]:
    """Add the AIAST label to one resource's ``meta.security`` (once); returns the resource."""
    meta = resource.setdefault("meta", {})
    security = meta.setdefault("security", [])
    if not any(s.get("system") == AIAST["system"] and s.get("code") == AIAST["code"] for s in security):
        security.append(dict(AIAST))
    return resource


def provenance(
    targets: list[dict[str, Any]],
    device: dict[str, Any],
    *,
    input_sha256: str,
    recorded: str,
    policy: str,
) -> dict[str, Any]:
    """A Provenance: the model Device produced ``targets`` from the input of that sha256."""
    model = next((d["name"] for d in device.get("deviceName", []) if d.get("name")), "the model")
    return {
        "resourceType": "Provenance",
        "id": fhir.new_id(),
        "target": [fhir.ref(t) for t in targets],
        "recorded": recorded,
        "policy": [policy],
        "activity": {
            "coding": [{"system": _DATA_OPERATION, "code": "CREATE", "display": "create"}],
            "text": "AI model inference",
        },
        "agent": [
            {
                "type": {"coding": [{"system": _PROVENANCE_AGENT_TYPE, "code": "performer", "display": "Performer"}]},
                "who": {**fhir.ref(device), "display": model},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": INPUT_SYSTEM, "value": f"sha256:{input_sha256}"},
                    "display": "the request's input, identified by the sha256 of its bytes only",
                },
            }
        ],
    }


def label_and_attest(
    bundle: dict[str, Any],
    *,
    input_sha256: str,
    recorded: str | None = None,
    api_base: str | None = None,
) -> dict[str, Any]:
    """Label every resource of a MedServe Bundle as AI-asserted and add its Provenance.

    Parameters
    ----------
    bundle
        A Bundle from one of the tasks' FHIR builders; changed in place and returned.
    input_sha256
        Hex sha256 of the input bytes (the request body, or the batch row/object).
    recorded
        When the prediction was made (FHIR ``instant``); defaults to the Bundle timestamp.
    api_base
        The API's base URL, for the model card link (see :func:`card_policy`).
    """
    resources = [e["resource"] for e in bundle.get("entry", [])]
    devices = [r for r in resources if r.get("resourceType") == "Device"]
    if len(devices) != 1:
        raise ValueError("a MedServe Bundle holds exactly one model Device")
    device = devices[0]
    ids = {i.get("system"): i.get("value") for i in device.get("identifier", [])}
    model_id = str(ids.get("https://medserve.dev/model-id") or device["deviceName"][0]["name"])
    version = str(device["version"][0]["value"])
    when = recorded or bundle.get("timestamp") or fhir.now()
    targets = [r for r in resources if r.get("resourceType") not in _NOT_TARGETS]
    if not any(r.get("resourceType") == "Provenance" for r in resources):
        prov = provenance(
            targets,
            device,
            input_sha256=input_sha256,
            recorded=when,
            policy=card_policy(model_id, version, api_base),
        )
        bundle["entry"].append({"fullUrl": f"urn:uuid:{prov['id']}", "resource": prov})
    for entry in bundle["entry"]:
        label(entry["resource"])
    label(bundle)
    return bundle
