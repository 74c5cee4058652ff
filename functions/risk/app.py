"""RiskFunction: ``POST /v1/risk/{model_id}/predict`` (tabular models)."""

from __future__ import annotations

from medserve import fhir, risk, snapstart
from medserve.api import create_app, lambda_entry, prediction_response
from medserve.registry import Registry

REGISTRY = Registry.from_env(task="risk")  # Lambda init: sessions opened once
app = create_app(model_lookup=lambda model_id: REGISTRY.get(model_id, task="risk"))


@app.post("/v1/risk/<model_id>/predict")
def predict(model_id: str, request: risk.RiskRequest):  # noqa: ANN201 (Powertools reads return types)
    entry = REGISTRY.get(model_id, task="risk")
    result = risk.predict(entry, request.instances, explain_=request.explain)
    return prediction_response(app, entry, result, fhir=lambda rid: fhir.risk_bundle(entry, result, rid))


lambda_handler = lambda_entry(app)
SNAPSTART = snapstart.install(app, REGISTRY, task="risk", handler=lambda_handler)  # see medserve.snapstart
