"""FHIR R4 for imaging models: a DiagnosticReport with its Observations, and the model as Device."""

from __future__ import annotations

from typing import Any

from medserve import fhir
from medserve.registry import ModelEntry
from medserve.tasks.imaging.service import ImagingSpec

_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def bundle(entry: ModelEntry, result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle: DiagnosticReport, its Observations, the model as Device.

    The report's status is ``preliminary``: it is an unverified machine result that
    a clinician has not reviewed, so it must not be presented as ``final``. No
    patient, subject or DICOM identifier is included (none is read). The report has
    no ``performer``: R4 allows only Practitioner, PractitionerRole, Organization or
    CareTeam there; each Observation names the model in ``device`` instead.
    """
    spec: ImagingSpec = entry.spec
    dev = fhir.device(entry)
    when = fhir.now()
    pred = result["prediction"]
    positive = pred["label"] == spec.positive
    p_pos = pred["probabilities"][spec.positive]
    common: dict[str, Any] = {
        "status": "preliminary",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
        "effectiveDateTime": when,
        "issued": when,
        "device": fhir.ref(dev),
    }
    finding: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir.new_id(),
        **common,
        "code": {"text": spec.finding_text},
        "valueCodeableConcept": {"text": pred["label"]},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": _INTERPRETATION,
                        "code": "POS" if positive else "NEG",
                        "display": "Positive" if positive else "Negative",
                    }
                ],
                "text": f"{spec.positive} {'suggested' if positive else 'not suggested'} at threshold "
                f"{spec.threshold:.4g}",
            }
        ],
        "note": [{"text": "Machine output of a research model; not reviewed by a clinician."}],
    }
    probabilities = [
        {
            "resourceType": "Observation",
            "id": fhir.new_id(),
            **common,
            "code": {"text": f"AI-estimated probability of {label}"},
            "valueQuantity": {
                "value": p,
                "unit": "probability",
                "system": "http://unitsofmeasure.org",
                "code": "1",
            },
        }
        for label, p in pred["probabilities"].items()
    ]
    observations = [finding, *probabilities]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": fhir.new_id(),
        "identifier": [{"system": "https://medserve.dev/request", "value": request_id}],
        "status": "preliminary",
        "category": [{"coding": [{"system": _CATEGORY, "code": "RAD", "display": "Radiology"}]}],
        "code": {"text": spec.report_text},
        "effectiveDateTime": when,
        "issued": when,
        "result": [fhir.ref(o) for o in observations],
        "conclusion": (
            f"{pred['label']} (probability of {spec.positive} {p_pos:.3f}, threshold {spec.threshold:.4g}). "
            "Preliminary machine result of a research model; not for clinical use."
            + (" Trained on SYNTHETIC data: no clinical meaning." if entry.synthetic else "")
        ),
    }
    if result.get("heatmap"):
        hm = result["heatmap"]
        report["presentedForm"] = [
            {
                "contentType": "image/png",
                "data": hm["png"],
                "title": f"class activation map for {spec.positive} ({hm['width']}x{hm['height']})",
            }
        ]
    return fhir.bundle([report, *observations, dev])
