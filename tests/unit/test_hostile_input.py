"""Issue 9 regressions (API side): no 5xx, no echo, no DICOM value in any log, capped error lists.

Each test here failed on the code before the fix it names.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import struct
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from medserve.problems import MAX_ERRORS, Problem, unprocessable
from medserve.tasks.imaging.decode import ImageSpec, decode_image
from tests.builders import make_dicom, ramp
from tests.conftest import invoke, load_event, with_body

ROUTES = {"risk": "risk_breast_cancer", "vitals": "vitals_predict", "imaging": "imaging_json"}
VITALS_OBS = load_event("vitals_predict")["body"].strip()
MARKER = "ZQXJ-Doe^Jane-7731"
"""A caller string that must never come back (not a plain identifier)."""


def dicom_event(data: bytes, query: dict[str, str] | None = None, **headers: str) -> dict[str, Any]:
    ev = with_body(load_event("imaging_json"), "", **{"Content-Type": "application/dicom", **headers})
    ev["body"] = base64.b64encode(data).decode("ascii")
    ev["isBase64Encoded"] = True
    ev["queryStringParameters"] = query
    ev["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return ev


def resave(data: bytes, **attrs: Any) -> bytes:
    """The DICOM with attributes set (``None`` deletes), written without validation."""
    ds = pydicom.dcmread(BytesIO(data))
    for name, value in attrs.items():
        if value is None:
            if name in ds:
                delattr(ds, name)
        else:
            setattr(ds, name, value)
    buf = BytesIO()
    with pydicom.config.disable_value_validation():
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def replace_value(data: bytes, old: bytes, new: bytes) -> bytes:
    """Swap an encoded element value for another of the same length (bypasses pydicom's writers).

    Only the start of an explicit-VR value matches (VR letters and a 2-byte length, then ``old``),
    so the digits inside a random UID elsewhere in the file cannot be mistaken for it.
    """
    assert len(old) == len(new), old
    pattern = re.compile(rb"(?<=[A-Z]{2}[\x00-\xff]{2})" + re.escape(old))
    matches = pattern.findall(data)
    assert len(matches) == 1, (old, len(matches))
    return pattern.sub(new, data)


def bad_voi_sequence() -> bytes:
    data = make_dicom(pixels=ramp(top=4095), bits=12)
    ds = pydicom.dcmread(BytesIO(data))
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0])  # LUT Descriptor needs three values
    ds.VOILUTSequence = [item]
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


BAD_DISPLAY = {
    "width-zero": (lambda: make_dicom(pixels=ramp(top=4095), bits=12, window=(2000, 0)), "dicom.WindowWidth"),
    "width-negative": (lambda: make_dicom(pixels=ramp(top=4095), bits=12, window=(2000, -40)), "dicom.WindowWidth"),
    "width-text": (
        lambda: replace_value(make_dicom(pixels=ramp(top=4095), bits=12, window=(2345, 5678)), b"5678", b"abcd"),
        "dicom.WindowWidth",
    ),
    "centre-text": (
        lambda: replace_value(make_dicom(pixels=ramp(top=4095), bits=12, window=(2345, 5678)), b"2345", b"x2y5"),
        "dicom.WindowCenter",
    ),
    "slope-text": (
        lambda: replace_value(make_dicom(pixels=ramp(top=4095), bits=12, rescale=(7.25, 3)), b"7.25", b"a.bc"),
        "dicom.RescaleSlope",
    ),
    "voi-function": (
        lambda: resave(make_dicom(pixels=ramp(top=4095), bits=12, window=(2000, 400)), VOILUTFunction="BOGUS"),
        "dicom.VOILUTFunction",
    ),
    "voi-sequence": (bad_voi_sequence, "dicom.VOILUTSequence"),
}


# --- finding 1: 5xx from bad input ----------------------------------------------------------
@pytest.mark.parametrize("task", sorted(ROUTES))
def test_an_integer_beyond_pythons_digit_limit_is_a_4xx(task: str) -> None:
    huge = "9" * 5000
    body = f'{{"instances": [{{"mean_radius": {huge}}}], "observations": [{{"heart_rate": {huge}}}], "image": {huge}}}'
    status, headers, problem = invoke(task, with_body(load_event(ROUTES[task]), body))
    assert status in (400, 422), (status, problem)
    assert headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("case", sorted(BAD_DISPLAY))
def test_invalid_dicom_display_attributes_are_422_naming_the_element(case: str) -> None:
    make, field = BAD_DISPLAY[case]
    data = make()
    with pytest.raises(Problem) as info:
        decode_image(data, spec=ImageSpec(), field="body")
    assert info.value.status == 422
    assert field in [e["field"] for e in info.value.errors], info.value.errors
    status, _, problem = invoke("imaging", dicom_event(data))
    assert status == 422, problem
    assert field in [e["field"] for e in problem["errors"]]


def test_problem_lists_at_most_100_errors_and_counts_the_rest() -> None:
    problem = unprocessable([(f"f{i}", "bad") for i in range(1234)])
    body = problem.to_dict("rid")
    assert len(body["errors"]) == MAX_ERRORS == 100
    assert body["errors_omitted"] == 1134
    assert "errors_omitted" not in unprocessable([("a", "bad")]).to_dict("rid")


def test_a_2mb_request_of_unknown_keys_gets_a_small_answer() -> None:
    instances = [{f"k{j:03d}_{i}": 1 for j in range(250)} for i in range(1000)]
    body = json.dumps({"instances": instances})
    assert len(body) > 2_000_000
    status, _, problem = invoke("risk", with_body(load_event("risk_breast_cancer"), body))
    assert status == 422
    assert len(json.dumps(problem)) < 64 * 1024
    assert len(problem["errors"]) == 100
    assert problem["errors_omitted"] >= 250_000 - 100


def test_vitals_500_observations_of_500_unknown_keys_gets_a_small_answer() -> None:
    obs = json.loads(load_event("vitals_predict")["body"])["observations"][0]
    observations = [{**obs, **{f"x{j:03d}": 1 for j in range(500)}} for _ in range(500)]
    status, _, problem = invoke("vitals", with_body(load_event("vitals_predict"), {"observations": observations}))
    assert status == 422
    assert len(json.dumps(problem)) < 64 * 1024
    assert len(problem["errors"]) == 100
    assert problem["errors_omitted"] > 0


# --- finding 2: caller input echoed -----------------------------------------------------------
def echoed(problem: Any) -> bool:
    text = json.dumps(problem)
    return MARKER in text or json.dumps(MARKER)[1:-1] in text


def test_imaging_json_unknown_keys_are_not_echoed() -> None:
    event = with_body(load_event("imaging_json"), {"image": "AAAA", MARKER: 1})
    status, _, problem = invoke("imaging", event)
    assert status == 422
    assert not echoed(problem), problem


@pytest.mark.parametrize("name", [MARKER, "patient_name"])
def test_unknown_query_parameter_names_are_not_echoed(name: str) -> None:
    status, _, problem = invoke("imaging", dicom_event(make_dicom(), query={name: "1"}))
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["query"]
    assert name not in json.dumps(problem)


@pytest.mark.parametrize("task", sorted(ROUTES))
def test_content_type_and_encoding_values_are_not_echoed(task: str) -> None:
    base = load_event(ROUTES[task])
    for header, field in (("Content-Type", "header.content-type"), ("Content-Encoding", "header.content-encoding")):
        event = with_body(base, base["body"], **{header: f"application/x-{MARKER}"})
        status, headers, problem = invoke(task, event)
        assert status == 415, problem
        assert headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in problem["errors"]] == [field]
        assert not echoed(problem), problem


def test_dicom_modality_is_not_echoed() -> None:
    data = resave(make_dicom(), Modality=MARKER)
    with pytest.raises(Problem) as info:
        decode_image(data, spec=ImageSpec(), field="body")
    assert [e["field"] for e in info.value.errors] == ["dicom.Modality"]
    status, _, problem = invoke("imaging", dicom_event(data))
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["dicom.Modality"]
    assert not echoed(problem), problem


# --- finding 3: DICOM values reach the logs -----------------------------------------------------
def test_no_dicom_value_reaches_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    marker = "mrk^leak^9931"  # invalid for CS (lower case, '^'): pydicom complains, quoting it
    files = [
        resave(make_dicom(), Modality=marker),
        resave(make_dicom(), StudyID=marker, InstanceNumber="1"),
        replace_value(make_dicom(window=(2345, 5678)), b"5678", b"nan "),
    ]
    caplog.set_level(logging.DEBUG)
    for data in files:
        try:
            decode_image(data, spec=ImageSpec(), field="body")
        except Problem:
            pass
        invoke("imaging", dicom_event(data))
    leaked = [r.name for r in caplog.records if marker in r.getMessage() or "nan" in r.getMessage().split()]
    assert caplog.records, "the handler logs at least its request line"
    assert not leaked, leaked


# --- finding 5 (handler side) ---------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(ROUTES))
def test_a_utf8_byte_order_mark_before_json_is_accepted(task: str) -> None:
    base = load_event(ROUTES[task])
    status, _, body = invoke(task, with_body(base, "\ufeff" + base["body"]))
    assert status == 200, body
    raw = dict(with_body(base, ""))
    raw["body"] = base64.b64encode(b"\xef\xbb\xbf" + base["body"].encode()).decode()
    raw["isBase64Encoded"] = True
    status, _, body = invoke(task, raw)
    assert status == 200, body


@pytest.mark.parametrize(
    ("task", "body", "field"),
    [
        ("risk", '{"instances": [{"mean_radius": 1, "mean_radius": 2}]}', "instances[0].mean_radius"),
        ("risk", '{"instances": [], "instances": [{"mean_radius": 1}]}', "instances"),
        ("vitals", f"{{{VITALS_OBS[1:-1]}, {VITALS_OBS[1:-1]}}}", "observations"),
        ("imaging", '{"image": "AAAA", "image": "AAAA"}', "image"),
    ],
)
def test_duplicate_json_keys_are_422_naming_the_field(task: str, body: str, field: str) -> None:
    status, _, problem = invoke(task, with_body(load_event(ROUTES[task]), body))
    assert status == 422, problem
    assert field in [e["field"] for e in problem["errors"]], problem


def test_duplicate_keys_that_are_not_identifiers_are_not_echoed() -> None:
    body = f'{{"instances": [{{"{MARKER}": 1, "{MARKER}": 2}}]}}'
    status, _, problem = invoke("risk", with_body(load_event("risk_breast_cancer"), body))
    assert status == 422
    assert "instances[0]" in [e["field"] for e in problem["errors"]]
    assert not echoed(problem)


@pytest.mark.parametrize(
    ("accept", "fhir"),
    [
        ("application/fhir+json;q=0, application/json", False),
        ("application/json;q=0.1, application/fhir+json;q=0.9", True),
        ("application/fhir+json", True),
        ("application/json, application/fhir+json;q=0.5", False),
        ("*/*", False),
    ],
)
def test_accept_q_values_are_honoured(accept: str, fhir: bool) -> None:
    base = load_event("risk_breast_cancer")
    status, headers, _ = invoke("risk", with_body(base, base["body"], Accept=accept))
    assert status == 200
    assert headers["content-type"] == ("application/fhir+json" if fhir else "application/json")


def j2k_declaring(width: int, height: int) -> bytes:
    """A 64 x 64 JPEG 2000 codestream whose SIZ marker is patched to declare ``width x height``."""
    buf = BytesIO()
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(buf, format="JPEG2000", no_jp2=True)
    data = bytearray(buf.getvalue())
    assert data[:4] == b"\xff\x4f\xff\x51"
    data[8:16] = struct.pack(">II", width, height)  # Xsiz, Ysiz
    return bytes(data)


@pytest.mark.parametrize(("rows", "cols"), [(64, 64), (8900, 8900)])
def test_a_dicom_whose_codestream_declares_a_huge_image_is_refused_before_decoding(
    rows: int, cols: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real = Dataset.pixel_array.fget  # type: ignore[attr-defined]

    def spy(ds: Dataset) -> Any:
        decoded.append(1)
        return real(ds)

    monkeypatch.setattr(Dataset, "pixel_array", property(spy))
    data = make_dicom(
        pixels=np.zeros((rows, cols), dtype=np.uint8) if rows < 100 else np.zeros((2, 2), dtype=np.uint8),
        bits=8,
        transfer_syntax=uid.JPEG2000Lossless,
        pixel_data=encapsulate([j2k_declaring(8900, 8900)]),
    )
    data = resave(data, Rows=rows, Columns=cols)
    with pytest.raises(Problem) as info:
        decode_image(data, spec=ImageSpec(), field="body")
    assert info.value.status in (413, 422)
    assert not decoded, "the pixel data was decoded before the declared size was checked"


@pytest.mark.parametrize("event", ["models_health", "models_list", "models_openapi"])
def test_handlers_answer_head_like_get_without_body(event: str) -> None:
    ev = load_event(event)
    ev["httpMethod"] = "HEAD"
    ev["requestContext"]["httpMethod"] = "HEAD"
    status, headers, body = invoke("models", ev)
    assert status == 200, body
    assert not body
    assert headers["content-type"].startswith("application/json")


def test_an_unknown_route_does_not_echo_the_path() -> None:
    ev = load_event("models_list")
    ev["path"] = f"/v1/models/a/{MARKER}"
    ev["resource"] = "/{proxy+}"
    status, headers, problem = invoke("models", ev)
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert not echoed(problem), problem
