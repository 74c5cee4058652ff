"""VitalsFunction: ``POST /v1/vitals/{model_id}/predict`` (vital-sign sequence models)."""

from __future__ import annotations

from medserve import snapstart
from medserve.api import create_app, lambda_entry, prediction_response, read_json
from medserve.registry import Registry
from medserve.vitals import service

REGISTRY = Registry.from_env(task="vitals")  # Lambda init: sessions opened once
app = create_app(
    model_lookup=lambda model_id: REGISTRY.get(model_id, task="vitals"),
    validation=False,  # the body is read and validated by medserve.vitals (read_json + parse)
)


@app.post("/v1/vitals/<model_id>/predict")
def predict(model_id: str):  # no return annotation: Powertools would build a schema for it
    entry = REGISTRY.get(model_id, task="vitals")
    request = service.parse(entry, read_json(app))
    result = service.predict(entry, request)
    return prediction_response(app, entry, result, fhir=lambda rid: service.fhir_bundle(entry, request, result, rid))


lambda_handler = lambda_entry(app)
SNAPSTART = snapstart.install(app, REGISTRY, task="vitals", handler=lambda_handler)  # see medserve.snapstart
