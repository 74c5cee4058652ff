"""ONNX export with tf2onnx, the Keras-vs-ONNX parity gate, file hashes and stack versions.

tf2onnx, onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

PARITY_TOLERANCE: float = 1e-5
OPSET: int = 17

__all__ = [
    "OPSET",
    "PARITY_TOLERANCE",
    "ParityError",
    "export_onnx",
    "onnx_io",
    "parity_gate",
    "sha256_file",
    "versions",
]


class ParityError(RuntimeError):
    """The exported ONNX graph does not reproduce the Keras model within tolerance."""


def _rename_io(model_proto: Any, renames: Mapping[str, str]) -> None:
    """Rename graph inputs/outputs of an ONNX ModelProto in place (every reference)."""
    g = model_proto.graph
    for node in g.node:
        for i, n in enumerate(node.input):
            if n in renames:
                node.input[i] = renames[n]
        for i, n in enumerate(node.output):
            if n in renames:
                node.output[i] = renames[n]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in renames:
            vi.name = renames[vi.name]


def _stable_dim_names(model_proto: Any) -> None:
    """Replace tf2onnx's process-global ``unk__<n>`` dimension names with stable ones.

    The batch axis (axis 0 of every graph input and output) becomes ``"N"``; any other
    unnamed dynamic axis becomes ``"unk_<i>"`` in order of appearance. Without this the
    ONNX bytes (and sha256) depend on how many models were converted earlier in the process.
    """
    g = model_proto.graph
    mapping: dict[str, str] = {}
    io_names = {v.name for v in list(g.input) + list(g.output)}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param.startswith("unk__"):
                if axis == 0 and vi.name in io_names:
                    d.dim_param = "N"
                else:
                    d.dim_param = mapping.setdefault(d.dim_param, f"unk_{len(mapping)}")


def export_onnx(
    model: Any,
    input_signature: Sequence[Any],
    path: str | os.PathLike[str],
    *,
    opset: int = OPSET,
    output_names: Sequence[str] | None = None,
) -> None:
    """Export a Keras model to ONNX with ``tf2onnx.convert.from_keras``.

    Parameters
    ----------
    model
        A built Keras model.
    input_signature
        ``tf.TensorSpec`` per input; their ``name`` become the ONNX input names
        (e.g. ``tf.TensorSpec([None, 30], tf.float32, name="features")``).
    path
        Where to write ``model.onnx``.
    opset
        ONNX opset (17).
    output_names
        Stable, meaningful ONNX output names (e.g. ``["probability"]``), in the model's
        output order. Defaults to the Keras output names.
    """
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=list(input_signature), opset=opset)
    if output_names is not None:
        current = [o.name for o in model_proto.graph.output]
        if len(current) != len(output_names):
            raise ValueError(f"model has {len(current)} outputs, got {len(output_names)} names")
        _rename_io(model_proto, dict(zip(current, output_names, strict=True)))
    wanted_inputs = [s.name for s in input_signature]
    got_inputs = [i.name for i in model_proto.graph.input]
    if any(w and w != g for w, g in zip(wanted_inputs, got_inputs, strict=False)):
        _rename_io(model_proto, {g: w for w, g in zip(wanted_inputs, got_inputs, strict=False) if w})
    _stable_dim_names(model_proto)
    onnx.checker.check_model(model_proto)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model_proto, str(path))


def onnx_io(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Names, shapes (``None`` for dynamic) and dtypes of an ONNX file's inputs and outputs."""
    import onnx
    from onnx import helper

    m = onnx.load(str(path))

    def spec(vi: Any) -> dict[str, Any]:
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        dtype = str(np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)))
        return {"name": vi.name, "shape": shape, "dtype": dtype}

    inits = {i.name for i in m.graph.initializer}
    return {
        "inputs": [spec(v) for v in m.graph.input if v.name not in inits],
        "outputs": [spec(v) for v in m.graph.output],
    }


def parity_gate(
    keras_outputs: Mapping[str, np.ndarray],
    onnx_path: str | os.PathLike[str],
    feeds: Mapping[str, np.ndarray],
    *,
    tol: float = PARITY_TOLERANCE,
    rtol: float = 0.0,
) -> dict[str, Any]:
    """Run ONNX Runtime on ``feeds`` and compare with the Keras outputs.

    An element passes iff ``|onnx - keras| <= tol + rtol * |keras|`` (the
    ``numpy.allclose`` rule). With the default ``rtol=0`` this is a pure absolute
    tolerance. Outputs in raw units of magnitude ~100 need a small ``rtol``: one float32
    ulp at 256 is already 3e-5.

    Parameters
    ----------
    keras_outputs
        ``{onnx output name: Keras output array}``.
    onnx_path
        The exported model.
    feeds
        ``{onnx input name: array}`` (the held-out set).
    tol
        Absolute tolerance.
    rtol
        Relative tolerance (0 = absolute only).

    Returns
    -------
    dict
        ``{"max_abs_diff", "tolerance", "rtol", "n", "per_output": {name: max_abs_diff}}``.

    Raises
    ------
    ParityError
        If an output is missing, has another shape, is not finite, or differs beyond tolerance.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = list(keras_outputs)
    available = {o.name for o in sess.get_outputs()}
    missing = [n for n in names if n not in available]
    if missing:
        raise ParityError(f"ONNX graph lacks outputs {missing}; it has {sorted(available)}")
    got = sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})
    per: dict[str, float] = {}
    failing: list[str] = []
    for name, o in zip(names, got, strict=True):
        ref = np.asarray(keras_outputs[name], dtype=np.float64)
        if o.shape != ref.shape:
            raise ParityError(f"output {name!r}: ONNX shape {o.shape} != Keras shape {ref.shape}")
        diff = np.abs(np.asarray(o, dtype=np.float64) - ref)
        per[name] = float(diff.max()) if diff.size else 0.0
        if not np.all(np.isfinite(diff)) or np.any(diff > tol + rtol * np.abs(ref)):
            failing.append(name)
    worst = max(per.values()) if per else 0.0
    n = int(len(next(iter(feeds.values())))) if feeds else 0
    if failing:
        raise ParityError(
            f"ONNX vs Keras outside tolerance (atol {tol:g}, rtol {rtol:g}) for {failing}; "
            f"max abs diff per output: {per}"
        )
    return {"max_abs_diff": worst, "tolerance": tol, "rtol": rtol, "n": n, "per_output": per}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the export stack (tensorflow, keras, tf2onnx, onnx, onnxruntime, numpy, ...)."""
    out: dict[str, str] = {}
    for dist, key in [
        ("tensorflow-cpu", "tensorflow"),
        ("tensorflow", "tensorflow"),
        ("keras", "keras"),
        ("tf2onnx", "tf2onnx"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("numpy", "numpy"),
        ("scikit-learn", "scikit-learn"),
    ]:
        if key in out:
            continue
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
