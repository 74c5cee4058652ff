"""ImagingFunction: ``POST /v1/imaging/{model_id}/predict`` (radiographs: PNG, JPEG, DICOM)."""

from __future__ import annotations

from medserve import snapstart
from medserve.api import create_app, header, lambda_entry, media_type, prediction_response, read_json
from medserve.imaging import service
from medserve.registry import Registry

REGISTRY = Registry.from_env(task="imaging")  # Lambda init: sessions opened once
app = create_app(
    accepted_content_types=service.RAW_CONTENT_TYPES,
    model_lookup=lambda model_id: REGISTRY.get(model_id, task="imaging"),
    validation=False,  # the body is read and validated by medserve.imaging (raw or read_json)
)


@app.post("/v1/imaging/<model_id>/predict")
def predict(model_id: str):  # no return annotation: Powertools would build a schema for it
    entry = REGISTRY.get(model_id, task="imaging")
    event = app.current_event
    ctype = media_type(header(app, "content-type"))
    if ctype in service.RAW_CONTENT_TYPES:
        request = service.read_raw(
            event.body,
            is_base64=event.is_base64_encoded,
            content_type=ctype,
            query=event.query_string_parameters,
        )
    else:
        request = service.read_json_body(read_json(app), event.query_string_parameters)
    result = service.predict(entry, request)
    return prediction_response(app, entry, result, fhir=lambda rid: service.fhir_bundle(entry, result, rid))


lambda_handler = lambda_entry(app)
SNAPSTART = snapstart.install(app, REGISTRY, task="imaging", handler=lambda_handler)  # see medserve.snapstart
