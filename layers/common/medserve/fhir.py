"""FHIR R4 pieces every task shares: the Bundle, the model as Device, references and times.

Each task builds its own result resources (``medserve.tasks.<task>.fhir``).

Only what the model computed goes in: no patient identifiers are ever copied
from a request (the API has none to copy; DICOM tags are never read into these).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

SHA256_SYSTEM = "urn:ietf:rfc:3986"  # identifier value is a URN
# RiskAssessment.subject is required (1..1) in R4. MedServe receives no patient identifiers,
# so the subject is a display-only reference the caller's system fills in.
UNIDENTIFIED_SUBJECT = {"display": "the patient of the request (no identifiers are sent to MedServe)"}


def new_id() -> str:
    """A fresh resource id (a UUID, also used as the ``urn:uuid`` fullUrl)."""
    return str(uuid.uuid4())


def now() -> str:
    """The current instant in FHIR ``instant`` format (UTC)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ref(resource: dict[str, Any]) -> dict[str, str]:
    """A Reference to a resource carried in the same Bundle."""
    return {"reference": f"urn:uuid:{resource['id']}"}


def device(entry: Any) -> dict[str, Any]:
    """The model as a FHIR Device: name, version, and its sha256 as an identifier."""
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": new_id(),
        "identifier": [
            {"system": "https://medserve.dev/model-id", "value": entry.id},
            {"system": SHA256_SYSTEM, "value": f"urn:sha256:{entry.sha256}", "type": {"text": "ONNX sha256"}},
        ],
        "status": "active",
        "deviceName": [{"name": entry.id, "type": "model-name"}],
        "type": {"text": f"MedServe {entry.task} model (software)"},
        "version": [{"value": entry.version}],
        "note": [{"text": "Research use only; not for clinical use."}],
    }
    if entry.synthetic:
        resource["note"].append({"text": "Trained on synthetic data: outputs carry no clinical meaning."})
    return resource


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``collection`` Bundle of resources, each with a ``urn:uuid`` fullUrl."""
    entries = []
    for res in resources:
        res.setdefault("id", new_id())
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": "collection",
        "timestamp": now(),
        "entry": entries,
    }
