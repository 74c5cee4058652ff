"""The Open Inference Protocol v2 (KServe / Triton "predict protocol v2") beside v1.

Served by one function for every model (paths carry no task). Tensors are the ONNX
model's own inputs and outputs, in the units and column order its manifest states
(standardisation is inside every graph), so the same numbers give the same answer
as the v1 route. The JSON form and the binary tensor data extension are both read
and written.

Validation is v1's: an unknown model or version is 404; a wrong input name,
datatype, shape or element count, a non-finite value or a value outside the
manifest's plausible range is 422 (400 when the body cannot be read at all).
Errors are RFC 9457 problems that also carry the protocol's ``"error"`` string.
No string the caller sent is repeated, except names equal to one of the model's
own tensor names and identifiers that look like one.

Binary transport through API Gateway (REST) needs two headers, both decided by
API Gateway, not by us: a request with binary tensors must say
``Content-Type: application/octet-stream`` (other types reach Lambda as text and
would be corrupted, so they are refused with 415), and binary outputs are sent
only when the request's first ``Accept`` is ``application/octet-stream`` (API
Gateway turns a base64 body back into bytes only then); otherwise the outputs
come back as JSON ``data``, which every protocol client reads.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit

from medserve import __version__, tasks
from medserve.api import SYNTHETIC_WARNING, logger, metrics
from medserve.problems import PROBLEM_CONTENT_TYPE, Problem, method_not_allowed, not_acceptable, unsupported_media_type

SERVER_NAME = "medserve"
EXTENSIONS: tuple[str, ...] = ("binary_tensor_data",)
PLATFORM = "onnxruntime_onnx"
OCTET_STREAM = "application/octet-stream"
_JSON_MEDIA = re.compile(r"^application/([a-z0-9.+-]*\+)?json$")
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_ERRORS = 100
"""Field errors listed in one problem; ``errors_omitted`` counts the rest."""
MAX_BATCH = 1000
"""Largest first (batch) dimension of an input tensor (v1's risk route takes 1000 rows)."""

# ONNX element type -> protocol datatype -> little-endian NumPy dtype.
_ONNX_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int16)": "INT16",
    "tensor(int8)": "INT8",
    "tensor(uint64)": "UINT64",
    "tensor(uint32)": "UINT32",
    "tensor(uint16)": "UINT16",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}
_MANIFEST_TO_V2 = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32"}
_V2_DTYPE = {
    "FP32": "<f4",
    "FP64": "<f8",
    "FP16": "<f2",
    "INT64": "<i8",
    "INT32": "<i4",
    "INT16": "<i2",
    "INT8": "i1",
    "UINT64": "<u8",
    "UINT32": "<u4",
    "UINT16": "<u2",
    "UINT8": "u1",
    "BOOL": "?",
}
_NP_TO_V2 = {np.dtype(v).newbyteorder("="): k for k, v in _V2_DTYPE.items()}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")
_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})


# --- problems ---------------------------------------------------------------------------
class V2Problem(Problem):
    """A :class:`Problem` whose body also carries the protocol's ``error`` and ``errors_omitted``."""

    def __init__(self, status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        errors = list(errors or [])
        super().__init__(status, title, detail, errors=errors[:MAX_ERRORS])
        self.omitted = max(0, len(errors) - MAX_ERRORS)

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        return with_error_member(super().to_dict(request_id), omitted=self.omitted)


def with_error_member(body: dict[str, Any], *, omitted: int = 0) -> dict[str, Any]:
    """Add the protocol's ``error`` string (title, detail and the first field) to a problem body."""
    errors = body.get("errors") or []
    if len(errors) > MAX_ERRORS:
        omitted += len(errors) - MAX_ERRORS
        body["errors"] = errors[:MAX_ERRORS]
    if omitted:
        body["errors_omitted"] = int(body.get("errors_omitted", 0)) + omitted
    if "error" not in body:
        text = f"{body.get('title', 'Error')}: {body.get('detail', '')}".rstrip(": ")
        if errors and isinstance(errors[0], dict) and errors[0].get("message") != body.get("detail"):
            text += f" ({errors[0].get('field')}: {errors[0].get('message')})"
        body["error"] = text
    return body


def no_route(method: str, allowed: list[str]) -> Problem:
    """405 (with ``Allow``) for a known path, else 404; the path the caller sent is not repeated."""
    if allowed:
        return method_not_allowed(method if _FIELD.match(method) else "this method", allowed)
    return V2Problem(
        404,
        "Not Found",
        "no such route; the protocol's routes are /v2, /v2/health/{live,ready}, "
        "/v2/models/{name}[/versions/{version}][/ready|/infer]",
    )


def invalid(errors: list[tuple[str, str]], omitted: int = 0) -> V2Problem:
    """422 naming every field at fault (at most :data:`MAX_ERRORS`)."""
    n = len(errors) + omitted
    problem = V2Problem(
        422,
        "Unprocessable Content",
        f"{n} invalid field{'s' if n != 1 else ''}; see errors",
        errors=[{"field": f, "message": m} for f, m in errors],
    )
    problem.omitted += omitted
    return problem


def unreadable(detail: str, field: str = "body") -> V2Problem:
    """400: the body cannot be read."""
    return V2Problem(400, "Bad Request", detail, errors=[{"field": field, "message": detail}])


class Errors:
    """Collects ``(field, message)`` pairs, keeping the first :data:`MAX_ERRORS` and counting the rest."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.omitted = 0

    def add(self, field: str, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append((field, message))
        else:
            self.omitted += 1

    def raise_if_any(self) -> None:
        if self.items:
            raise invalid(self.items, self.omitted)


def _named_items(
    errors: Errors, field: str, items: list[Any], keys: frozenset[str], names: list[str]
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(where, item, name)`` for each item of ``inputs``/``outputs`` that names a tensor of the model once.

    Every other item is an error: not an object, an unknown key, a name that is not the
    model's (never repeated back unless it is one), a name given twice.
    """
    kind = field[:-1]
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            errors.add(where, f"must be an object with a name (an {kind} of this model)")
            continue
        for key in item.keys() - keys:
            errors.add(*_unknown(where, key))
        name = _shown(item.get("name"), names)
        if name is None:
            errors.add(f"{where}.name", f"must be one of this model's {field}: {', '.join(names)}")
            continue
        if name in seen:
            errors.add(f"{where}.name", f"{kind} {name} is given twice")
            continue
        seen.add(name)
        yield where, item, name


def _shown(name: object, allowed: Iterable[str]) -> str | None:
    """``name`` when it equals one of ``allowed`` (our own tensor names), else None: never echo."""
    return name if isinstance(name, str) and name in set(allowed) else None


# --- model metadata ---------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, protocol datatype, shape (-1 for a dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _dims(shape: Iterable[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else -1 for d in shape)


_SIGNATURES: dict[tuple[str, str], tuple[list[TensorSpec], list[TensorSpec]]] = {}


def signature(entry: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The model's inputs and outputs, from its ONNX session (the manifest's ``onnx`` block without one)."""
    key = (entry.id, entry.version)
    if key not in _SIGNATURES:
        if entry.session is not None:
            ins = [
                TensorSpec(i.name, _ONNX_TO_V2.get(i.type, "BYTES"), _dims(i.shape)) for i in entry.session.get_inputs()
            ]
            outs = [
                TensorSpec(o.name, _ONNX_TO_V2.get(o.type, "BYTES"), _dims(o.shape))
                for o in entry.session.get_outputs()
            ]
        else:
            onnx = entry.manifest["onnx"]
            ins, outs = (
                [TensorSpec(t["name"], _MANIFEST_TO_V2.get(t.get("dtype", ""), "BYTES"), _dims(t["shape"])) for t in ts]
                for ts in (onnx["inputs"], onnx["outputs"])
            )
        _SIGNATURES[key] = (ins, outs)
    return _SIGNATURES[key]


def _resolve(registry: Any, name: str, version: str | None = None) -> Any:
    """The registry entry for ``name`` at ``version`` (the live one when None); 404 otherwise.

    Every route resolves models here only: an unknown model, or an unknown or retired
    version, is a 404 naming the versions served.
    """
    return registry.get(name, version=version)


def versions(registry: Any, entry: Any) -> list[str]:
    """The versions of a model this deployment answers with (live and candidates)."""
    return [e.version for e in registry.model(entry.id).served()]


def server_metadata() -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


def server_ready(registry: Any) -> dict[str, Any]:
    """``GET /v2/health/ready``: 200 when every model's session is open (the protocol's 4xx otherwise)."""
    if not all(e.session is not None for e in registry.all_entries()):
        raise V2Problem(400, "Bad Request", "not every model is ready in this function")
    return {"ready": True}


def model_metadata(registry: Any, name: str, version: str | None) -> dict[str, Any]:
    """``GET /v2/models/{name}[/versions/{version}]``."""
    entry = _resolve(registry, name, version)
    ins, outs = signature(entry)
    return {
        "name": entry.id,
        "versions": versions(registry, entry),
        "platform": PLATFORM,
        "inputs": [t.as_dict() for t in ins],
        "outputs": [t.as_dict() for t in outs],
    }


def model_ready(registry: Any, name: str, version: str | None) -> dict[str, Any]:
    """``GET /v2/models/{name}[/versions/{version}]/ready``: 200 when its session is open."""
    entry = _resolve(registry, name, version)
    if entry.session is None:
        raise V2Problem(400, "Bad Request", f"model '{entry.id}' is not ready in this function")
    return {"name": entry.id, "ready": True}


# --- value constraints from the manifest ------------------------------------------------
@dataclass
class Column:
    name: str
    lo: float
    hi: float
    unit: str
    codes: tuple[float, ...] | None = None  # allowed values (coded categories)


def columns_of(manifest: dict[str, Any]) -> list[Column]:
    out = []
    for i in manifest.get("inputs", []):
        allowed = i.get("allowed")
        out.append(
            Column(
                name=str(i["name"]),
                lo=float(i.get("min", -math.inf)),
                hi=float(i.get("max", math.inf)),
                unit=str(i.get("unit") or ""),
                codes=tuple(float(a) for a in allowed) if allowed else None,
            )
        )
    return out


def _range_text(col: Column) -> str:
    if col.codes is not None:
        return f"{col.name} must be one of {', '.join(f'{c:g}' for c in col.codes)}"
    return f"{col.name} must be between {col.lo:g} and {col.hi:g} {col.unit}".rstrip()


def check_columns(
    errors: Errors, field: str, x: np.ndarray, columns: list[Column], where: np.ndarray | None = None
) -> None:
    """Each element along the last axis of ``x`` against its manifest column (``where``: cells to check)."""
    lo = np.array([c.lo for c in columns])
    hi = np.array([c.hi for c in columns])
    with np.errstate(invalid="ignore"):
        bad = (x < lo) | (x > hi)
    for k, col in enumerate(columns):
        if col.codes is not None:
            bad[..., k] |= ~np.isin(x[..., k], col.codes)
    if where is not None:
        bad &= where[..., None]
    report(errors, field, bad, lambda idx: _range_text(columns[idx[-1]]))


def report(errors: Errors, field: str, bad: np.ndarray, message: Callable[[tuple[int, ...]], str]) -> None:
    flat = np.flatnonzero(bad)
    for pos in flat[: MAX_ERRORS + 1].tolist():
        idx = np.unravel_index(pos, bad.shape)
        errors.add(f"{field}[{pos}]", message(tuple(int(i) for i in idx)))
    errors.omitted += max(0, len(flat) - MAX_ERRORS - 1)


def _check_values(entry: Any, tensors: dict[str, np.ndarray], fields: dict[str, str], errors: Errors) -> None:
    """The manifest's plausible ranges: the model's task knows them (what v1 enforces on the same numbers)."""
    tasks.get(entry.task).check_tensors(entry, tensors, fields, errors)


# --- reading an inference request -------------------------------------------------------
@dataclass
class InferRequest:
    """A checked inference request: feeds for ``session.run``, the outputs to return, and how."""

    id: str | None
    feeds: dict[str, np.ndarray]
    outputs: list[str]
    binary: dict[str, bool]


def split_body(body: str | None, *, is_base64: bool, headers: dict[str, str]) -> tuple[Any, bytes]:
    """The JSON header (parsed) and the binary tail of a request body.

    ``headers`` are lower-cased. Raises 400/415/422 :class:`V2Problem`.
    """
    ctype = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if ctype and ctype != OCTET_STREAM and not _JSON_MEDIA.match(ctype):
        problem = unsupported_media_type(
            f"this Content-Type is not read here; send application/json, or {OCTET_STREAM} with binary tensors",
            field="header.content-type",
        )
        raise V2Problem(415, problem.title, problem.detail, errors=problem.errors)
    if not body:
        raise unreadable("the request body is empty; send an inference request")
    try:
        raw = base64.b64decode(body, validate=True) if is_base64 else body.encode("utf-8")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise unreadable("the request body could not be read as bytes") from None
    length_text = headers.get(HEADER_LENGTH.lower())
    if length_text is None:
        head, tail = raw, b""
    else:
        field = f"header.{HEADER_LENGTH.lower()}"
        if not re.fullmatch(r"\s*[0-9]{1,12}\s*", length_text):
            raise unreadable(f"{HEADER_LENGTH} must be a whole number of bytes", field=field)
        n = int(length_text)
        if n == 0 or n > len(raw):
            raise unreadable(f"{HEADER_LENGTH} must be between 1 and the body's length ({len(raw)} bytes)", field=field)
        head, tail = raw[:n], raw[n:]
    if tail:
        if ctype != OCTET_STREAM:
            problem = unsupported_media_type(
                f"binary tensor data needs Content-Type: {OCTET_STREAM} (API Gateway passes other types as text, "
                "which would corrupt the bytes); or send the tensors as JSON data",
                field="header.content-type",
            )
            raise V2Problem(415, problem.title, problem.detail, errors=problem.errors)
    try:
        parsed = json.loads(head.decode("utf-8"))
    except UnicodeDecodeError:
        raise unreadable(
            f"the JSON part is not UTF-8 text (is {HEADER_LENGTH} the JSON part's length in bytes?)"
        ) from None
    except RecursionError:
        raise unreadable("the request body is nested too deeply to be read") from None
    except ValueError:
        hint = "" if length_text is not None else f" (binary tensor data needs the {HEADER_LENGTH} header)"
        raise unreadable(f"the inference request is not valid JSON{hint}") from None
    return parsed, tail


def _flatten(data: Any) -> list[Any] | None:
    """Row-major leaves of a (possibly nested) JSON array; None when ``data`` is not an array."""
    if not isinstance(data, list):
        return None
    if not any(type(v) is list for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_json(flat: list[Any], datatype: str) -> np.ndarray | str:
    """A NumPy array of ``datatype`` from JSON leaves, or a message saying why not."""
    types = set(map(type, flat))
    target = np.dtype(_V2_DTYPE[datatype]).newbyteorder("=")
    if datatype == "BOOL":
        return np.array(flat, dtype=bool) if types <= {bool} else "must hold only true/false"
    if target.kind == "f":
        if not types <= {int, float}:
            return "must hold only numbers"
        try:
            wide = np.array(flat, dtype=np.float64)
        except OverflowError:
            return "holds a number too large for this datatype"
        with np.errstate(over="ignore", invalid="ignore"):
            return wide.astype(target)
    if not types <= {int}:
        return "must hold only integers"
    info = np.iinfo(target)
    if flat and (min(flat) < info.min or max(flat) > info.max):
        return f"holds an integer outside {datatype}'s range"
    return np.array(flat, dtype=target)


def _params(errors: Errors, field: str, params: Any, allowed: dict[str, type]) -> dict[str, Any]:
    """A ``parameters`` object holding only the ``allowed`` keys with values of their types."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        errors.add(field, "must be an object")
        return {}
    out = {}
    for key, value in params.items():
        if key not in allowed:
            f, _ = _unknown(field, key)
            errors.add(f, "parameter not supported here" + ("" if f != field else " (its name is not repeated)"))
            continue
        kind = allowed[key]
        if kind is int and (type(value) is not int or value < 0):
            errors.add(f"{field}.{key}", "must be a whole number >= 0")
        elif kind is bool and type(value) is not bool:
            errors.add(f"{field}.{key}", "must be true or false")
        else:
            out[key] = value
    return out


def _unknown(parent: str, key: object) -> tuple[str, str]:
    name = str(key)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        return (f"{parent}.{name}" if parent else name, "unknown field")
    return (parent or "body", "has an unknown field (its name is not repeated: not a plain identifier)")


def parse_infer(entry: Any, body: Any, binary: bytes) -> InferRequest:
    """Check an inference request against the model (422 naming every field at fault)."""
    if not isinstance(body, dict):
        raise invalid([("body", "must be a JSON object (an inference request)")])
    errors = Errors()
    for key in body.keys() - _REQUEST_KEYS:
        errors.add(*_unknown("", key))
    rid = body.get("id")
    if rid is not None and not (isinstance(rid, str) and (rid == "" or _ID.match(rid))):
        errors.add("id", "must be a string of up to 64 letters, digits, '.', '_', ':' or '-' (it is echoed back)")
    params = _params(errors, "parameters", body.get("parameters"), {"binary_data_output": bool})
    ins, outs = signature(entry)
    by_name = {t.name: t for t in ins}
    out_names = [t.name for t in outs]
    feeds: dict[str, np.ndarray] = {}
    fields: dict[str, str] = {}
    offset = 0
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        errors.add("inputs", f"required: a list of the model's inputs ({', '.join(by_name)})")
        raw_inputs = []
    for where, item, name in _named_items(errors, "inputs", raw_inputs, _INPUT_KEYS, list(by_name)):
        spec = by_name[name]
        fields[name] = f"{where}.data"
        dt = item.get("datatype")
        if dt != spec.datatype:
            errors.add(f"{where}.datatype", f"must be {spec.datatype} for input {name}")
        shape = item.get("shape")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            errors.add(f"{where}.shape", "must be a list of whole numbers >= 0")
            shape = None
        elif len(shape) != len(spec.shape) or any(s not in (-1, d) for s, d in zip(spec.shape, shape, strict=True)):
            errors.add(f"{where}.shape", f"must match {list(spec.shape)} (-1: any size) for input {name}")
            shape = None
        elif shape and not 1 <= shape[0] <= MAX_BATCH:
            errors.add(f"{where}.shape", f"the first (batch) dimension must be between 1 and {MAX_BATCH}")
            shape = None
        elif 0 in shape:
            errors.add(f"{where}.shape", "every dimension must be at least 1")
            shape = None
        p = _params(errors, f"{where}.parameters", item.get("parameters"), {"binary_data_size": int})
        size = p.get("binary_data_size")
        if size is not None:
            if "data" in item:
                errors.add(f"{where}.data", "must be absent when parameters.binary_data_size is given")
            chunk = binary[offset : offset + size]
            offset += size
            if len(chunk) != size:
                continue  # reported below with the total
            if shape is None or dt != spec.datatype:
                continue
            itemsize = np.dtype(_V2_DTYPE[spec.datatype]).itemsize
            count = math.prod(shape)
            if size != count * itemsize:
                errors.add(
                    f"{where}.parameters.binary_data_size",
                    f"must be {count * itemsize} bytes ({count} {spec.datatype} elements of {itemsize} bytes)",
                )
                continue
            arr = np.frombuffer(chunk, dtype=_V2_DTYPE[spec.datatype]).astype(
                np.dtype(_V2_DTYPE[spec.datatype]).newbyteorder("="), copy=True
            )
            feeds[name] = arr.reshape(shape)
            continue
        if "data" not in item:
            errors.add(f"{where}.data", "required (or parameters.binary_data_size with binary tensor data)")
            continue
        flat = _flatten(item["data"])
        if flat is None:
            errors.add(f"{where}.data", "must be an array of the tensor's elements, in row-major order")
            continue
        if shape is None or dt != spec.datatype:
            continue
        count = math.prod(shape)
        if len(flat) != count:
            errors.add(f"{where}.data", f"holds {len(flat)} elements; the shape needs {count}")
            continue
        arr_or_msg = _from_json(flat, spec.datatype)
        if isinstance(arr_or_msg, str):
            errors.add(f"{where}.data", arr_or_msg)
            continue
        feeds[name] = arr_or_msg.reshape(shape)
    if offset != len(binary):
        errors.add(
            "parameters.binary_data_size",
            f"the inputs' binary_data_size add up to {offset} bytes but {len(binary)} bytes follow the JSON part",
        )
    for name in by_name:
        if name not in fields and raw_inputs:
            errors.add("inputs", f"input {name} is missing")
    for name, x in feeds.items():
        if x.dtype.kind == "f":
            report(errors, fields[name], ~np.isfinite(x), lambda idx: "must be a finite number")
    if not errors.items and len(feeds) == len(by_name):
        _check_values(entry, feeds, fields, errors)
    wanted, binary_flags = _requested_outputs(errors, body.get("outputs"), out_names, params)
    errors.raise_if_any()
    return InferRequest(id=rid or None, feeds=feeds, outputs=wanted, binary=binary_flags)


def _requested_outputs(
    errors: Errors, raw: Any, names: list[str], params: dict[str, Any]
) -> tuple[list[str], dict[str, bool]]:
    default = bool(params.get("binary_data_output", False))
    if raw is None:
        return list(names), dict.fromkeys(names, default)
    if not isinstance(raw, list):
        errors.add("outputs", "must be a list of {name, parameters?}")
        return [], {}
    wanted: list[str] = []
    flags: dict[str, bool] = {}
    for where, item, name in _named_items(errors, "outputs", raw, _OUTPUT_KEYS, list(names)):
        p = _params(errors, f"{where}.parameters", item.get("parameters"), {"binary_data": bool})
        wanted.append(name)
        flags[name] = bool(p.get("binary_data", default))
    return wanted, flags


# --- answering --------------------------------------------------------------------------
def infer(entry: Any, request: InferRequest, *, request_id: str, binary_ok: bool) -> tuple[bytes, int | None]:
    """Run the model once; the response body and, for a binary response, its JSON part's length."""
    results = entry.run(request.feeds)
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name in request.outputs:
        arr = np.ascontiguousarray(results[name])
        datatype = _NP_TO_V2.get(arr.dtype.newbyteorder("="))
        if datatype is None or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
            raise ValueError(f"{entry.id}: output {name} cannot be answered")  # a bug in the model, not the input
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary_ok and request.binary.get(name):
            data = arr.astype(np.dtype(_V2_DTYPE[datatype]), copy=False).tobytes()
            out["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            out["data"] = arr.reshape(-1).tolist()
        outputs.append(out)
    body = {
        "model_name": entry.id,
        "model_version": entry.version,
        "id": request.id or request_id,
        "parameters": {
            "request_id": request_id,
            "sha256": entry.sha256,
            "synthetic": entry.synthetic,
            **({"warning": SYNTHETIC_WARNING} if entry.synthetic else {}),
        },
        "outputs": outputs,
    }
    head = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)


def handle_infer(
    registry: Any,
    name: str,
    version: str | None,
    *,
    body: str | None,
    is_base64: bool,
    headers: dict[str, str],
    request_id: str,
    binary_ok: bool,
) -> tuple[bytes, int | None]:
    """``POST /v2/models/{name}[/versions/{version}]/infer``: resolve, read, check, run, answer."""
    entry = _resolve(registry, name, version)
    head, binary = split_body(body, is_base64=is_base64, headers=headers)
    request = parse_infer(entry, head, binary)
    logger.append_keys(model_id=entry.id, model_version=entry.version)
    logger.info(
        "v2 infer",
        extra={"n_inputs": len(request.feeds), "binary_bytes": len(binary), "n_outputs": len(request.outputs)},
    )
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    return infer(entry, request, request_id=request_id, binary_ok=binary_ok)


def check_accept(accept: str) -> None:
    """406 unless ``Accept`` (when given) allows JSON or binary tensor data."""
    from medserve.negotiate import quality

    if accept.strip() and quality(accept, "application/json") <= 0.0 and quality(accept, OCTET_STREAM) <= 0.0:
        problem = not_acceptable(
            f"inference answers application/json, or {OCTET_STREAM} with binary outputs; "
            "the Accept header allows neither"
        )
        raise V2Problem(406, problem.title, problem.detail, errors=problem.errors)


def binary_accepted(accept: str) -> bool:
    """Whether API Gateway will hand a binary response over as bytes: its first Accept type is ours."""
    first = accept.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first == OCTET_STREAM


def add_error_member(response: dict[str, Any]) -> dict[str, Any]:
    """Give a problem+json proxy response the protocol's ``error`` member (and cap its errors)."""
    ctype = ""
    for k, v in {**(response.get("headers") or {}), **(response.get("multiValueHeaders") or {})}.items():
        if k.lower() == "content-type":
            ctype = v[-1] if isinstance(v, list) and v else str(v)
    if ctype != PROBLEM_CONTENT_TYPE or response.get("isBase64Encoded"):
        return response
    try:
        body = json.loads(response.get("body") or "")
    except ValueError:
        return response
    if isinstance(body, dict) and "error" not in body:
        response = {**response, "body": json.dumps(with_error_member(body), separators=(",", ":"))}
    return response


# --- OpenAPI ----------------------------------------------------------------------------
def openapi_paths(model_ids: list[str]) -> dict[str, Any]:
    """The v2 paths of the OpenAPI document (merged by :mod:`medserve.openapi`)."""
    problem = {"$ref": "#/components/schemas/Problem"}
    errs = {
        str(c): {"description": d, "content": {"application/problem+json": {"schema": problem}}}
        for c, d in (
            (400, "Unreadable body or header (also carries the protocol's `error` string)"),
            (404, "Unknown model or version"),
            (415, "Binary tensor data without Content-Type: application/octet-stream"),
            (422, "Wrong input name, datatype, shape, element count or an out-of-range value"),
        )
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": model_ids}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": sorted(_V2_DTYPE)},
            "data": {"type": "array", "description": "row-major elements (flat or nested)"},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
        },
    }
    infer_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "pattern": _ID.pattern},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": tensor},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                    },
                },
            },
        },
    }
    length_header = {
        "name": HEADER_LENGTH,
        "in": "header",
        "required": False,
        "description": "length in bytes of the JSON part when binary tensor data follows it",
        "schema": {"type": "integer", "minimum": 1},
    }
    infer_op = {
        "summary": "Run the model on the ONNX model's own input tensors (units as the manifest states)",
        "parameters": [length_header],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": infer_request},
                OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": "Outputs (binary ones after the JSON part when Accept is application/octet-stream)",
                "content": {"application/json": {"schema": {"type": "object"}}, OCTET_STREAM: {}},
            },
            **errs,
        },
    }

    def get(summary: str, *params: dict[str, Any]) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "ok"}, **errs}}
        if params:
            op["parameters"] = list(params)
        return {"get": op}

    return {
        "/v2": get("Server metadata (name, version, extensions)"),
        "/v2/health/live": get("Server liveness (protocol v2)"),
        "/v2/health/ready": get("Server readiness (protocol v2)"),
        "/v2/models/{name}": get("Model metadata: versions, platform, input and output tensors", name),
        "/v2/models/{name}/versions/{version}": get("Model metadata of one version", name, version),
        "/v2/models/{name}/ready": get("Model readiness", name),
        "/v2/models/{name}/versions/{version}/ready": get("Model readiness of one version", name, version),
        "/v2/models/{name}/infer": {"post": {**infer_op, "parameters": [name, length_header]}},
        "/v2/models/{name}/versions/{version}/infer": {
            "post": {**infer_op, "parameters": [name, version, length_header]}
        },
    }
