"""No patient data leaves through field names, details or logs, and MedServe's own bugs are counted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medserve.problems import Problem, unknown_key
from medserve.registry import Registry
from tests.conftest import MODELS, invoke, load_event, with_body, without_timings

NAME = "Jane Doe 1970-01-01"


@pytest.mark.parametrize(
    ("parent", "key", "field"),
    [
        ("instances[0]", "shoe_size", "instances[0].shoe_size"),
        ("instances[0]", NAME, "instances[0]"),
        ("", NAME, "body"),
    ],
)
def test_unknown_keys_are_named_only_when_plain_identifiers(parent: str, key: str, field: str) -> None:
    got, message = unknown_key(parent, key)
    assert got == field
    assert NAME not in got + message


@pytest.mark.parametrize(
    ("task", "event_name", "mutate"),
    [
        ("risk", "risk_breast_cancer", lambda b: b["instances"][0].update({NAME: 1})),
        ("risk", "risk_breast_cancer", lambda b: b.update({NAME: 1})),
        ("vitals", "vitals_predict", lambda b: b["observations"][0].update({NAME: 1})),
        ("vitals", "vitals_predict", lambda b: b.update({NAME: 1})),
    ],
)
def test_unknown_keys_that_may_be_patient_data_are_not_echoed(task: str, event_name: str, mutate: Any) -> None:
    event = load_event(event_name)
    body = json.loads(event["body"])
    mutate(body)
    status, _, problem = invoke(task, with_body(event, body))
    assert status == 422, problem
    assert NAME not in json.dumps(problem)


def test_a_model_id_that_is_not_an_id_is_not_echoed() -> None:
    registry = Registry.load(MODELS, sessions=False)
    with pytest.raises(Problem) as err:
        registry.get(NAME, task="risk")
    assert err.value.status == 404
    assert NAME not in err.value.detail
    with pytest.raises(Problem) as err:
        registry.get("no-such-model", task="risk")
    assert "'no-such-model'" in err.value.detail


def test_a_bug_is_a_500_problem_logged_without_its_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from medserve.api import logger
    from medserve.tasks.risk import service as risk

    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("could not use 123.456 for Jane")  # library messages can quote values

    monkeypatch.setattr(risk, "predictions", broken)
    caplog.set_level("INFO")
    capsys.readouterr()
    status, headers, problem = invoke("risk", load_event("risk_breast_cancer"))
    assert status == 500
    assert headers["content-type"] == "application/problem+json"
    assert "123.456" not in json.dumps(problem)
    logs = without_timings("\n".join(logger.registered_formatter.format(r) for r in caplog.records))
    assert '"error_type":"ValueError"' in logs
    assert "broken" in logs  # where it happened...
    assert "123.456" not in logs  # ...but never what it said
    assert "Jane" not in logs
    emitted = capsys.readouterr().out  # EMF metrics go to stdout
    assert '"UnhandledErrors"' in emitted


def test_risk_and_vitals_fhir_have_a_subject_and_are_preliminary() -> None:
    for task, name in (("risk", "risk_breast_cancer_fhir"), ("vitals", "vitals_predict_fhir")):
        status, _, bundle = invoke(task, load_event(name))
        assert status == 200, bundle
        (ra,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment"][:1]
        assert ra["status"] == "preliminary"
        assert ra["subject"]["display"]
        assert "reference" not in ra["subject"]  # no identifier of any patient


def test_vitals_fhir_near_the_end_of_time_is_not_a_500() -> None:
    event = load_event("vitals_predict_fhir")
    body = json.loads(event["body"])
    body["observations"] = body["observations"][-1:]
    body["observations"][0]["time"] = "9999-12-31T23:00:00Z"
    status, _, bundle = invoke("vitals", with_body(event, body, Accept="application/fhir+json"))
    assert status == 200, bundle
