"""Manifest pieces and the model-folder writer: input entries with plausible ranges,
``write_model_folder`` (``manifest.json``, ``card.md``, ``parity.npz`` beside ``model.onnx``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_export.export import onnx_io, sha256_file

__all__ = ["RANGE_RULE", "input_entries", "plausible_range", "write_model_folder"]


def plausible_range(train_values: np.ndarray, *, widen: float = 0.5, non_negative: bool = True) -> tuple[float, float]:
    """Training range widened by ``widen`` of its width on each side, clipped at 0 if non-negative."""
    lo, hi = float(np.min(train_values)), float(np.max(train_values))
    w = hi - lo
    lo_w, hi_w = lo - widen * w, hi + widen * w
    if non_negative:
        lo_w = max(0.0, lo_w)
    return lo_w, hi_w


def write_model_folder(
    out_dir: str | os.PathLike[str],
    manifest: dict[str, Any],
    card_md: str,
    parity_arrays: Mapping[str, np.ndarray],
) -> Path:
    """Finish a model folder whose ``model.onnx`` is already in ``out_dir``.

    Fills ``manifest["onnx"]["sha256"]`` (and ``["parity"]["reference"]``), checks that
    the manifest's ONNX input/output names match the file, and writes
    ``manifest.json`` (sorted keys, indent 2), ``card.md`` and ``parity.npz``.

    Parameters
    ----------
    out_dir
        ``layers/models/<id>/<version>``.
    manifest
        The manifest (docs/manifest.md); modified in place.
    card_md
        Markdown model card.
    parity_arrays
        Inputs under ``"in:<onnx input name>"`` and Keras outputs under
        ``"out:<onnx output name>"``.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    onnx_file = out / manifest.get("onnx", {}).get("file", "model.onnx")
    if not onnx_file.is_file():
        raise FileNotFoundError(f"{onnx_file} must be exported before write_model_folder")
    bad = [k for k in parity_arrays if not (k.startswith("in:") or k.startswith("out:"))]
    if bad:
        raise ValueError(f"parity array keys must start with 'in:' or 'out:': {bad}")
    io = onnx_io(onnx_file)
    for side in ("inputs", "outputs"):
        declared = [s["name"] for s in manifest["onnx"].get(side, [])]
        actual = [s["name"] for s in io[side]]
        if declared != actual:
            raise ValueError(f"manifest onnx.{side} {declared} != ONNX file {actual}")
    in_names = {k[3:] for k in parity_arrays if k.startswith("in:")}
    out_names = {k[4:] for k in parity_arrays if k.startswith("out:")}
    if in_names != {s["name"] for s in io["inputs"]} or out_names != {s["name"] for s in io["outputs"]}:
        raise ValueError("parity arrays must cover every ONNX input and output exactly")
    manifest["onnx"]["sha256"] = sha256_file(onnx_file)
    manifest.setdefault("parity", {})["reference"] = "parity.npz"
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    (out / "card.md").write_text(card_md if card_md.endswith("\n") else card_md + "\n", encoding="utf-8")
    np.savez(out / "parity.npz", **{k: np.asarray(v) for k, v in parity_arrays.items()})  # type: ignore[arg-type]
    return out


def _short(v: float) -> float:
    """Shortest decimal that round-trips through float32 (41.599998 -> 41.6)."""
    return float(str(np.float32(v)))


def _round_out(v: float, *, down: bool, sig: int = 4) -> float:
    """Round to ``sig`` significant digits, away from the interval's inside."""
    if v == 0 or not np.isfinite(v):
        return float(v)
    scale = 10 ** (np.floor(np.log10(abs(v))) - sig + 1)
    r = (np.floor if down else np.ceil)(v / scale) * scale
    return float(f"{r:.{sig}g}")


RANGE_RULE = "training-split range widened by 50% of its width on each side, clipped at 0 for non-negative quantities"


def input_entries(
    names: Sequence[str],
    x_train: np.ndarray,
    *,
    units: Mapping[str, str],
    descriptions: Mapping[str, str],
    allowed: Mapping[str, list[float]] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    x_all: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Manifest ``inputs`` entries (raw units) with plausible and training ranges.

    ``min``/``max`` follow :data:`RANGE_RULE` unless ``bounds`` (physiological limits)
    or ``allowed`` (a discrete code list; then min/max are its extremes) say otherwise.
    If ``x_all`` is given, every value of the whole dataset must fall inside the range.
    """
    allowed = dict(allowed or {})
    bounds = dict(bounds or {})
    rows = []
    for j, name in enumerate(names):
        col = np.asarray(x_train[:, j], dtype=float)
        if name in allowed:
            lo, hi = float(min(allowed[name])), float(max(allowed[name]))
        elif name in bounds:
            lo, hi = map(float, bounds[name])
        else:
            lo, hi = plausible_range(col, non_negative=bool(col.min() >= 0))
        if x_all is not None:
            full = np.asarray(x_all[:, j], dtype=float)
            if full.min() < lo or full.max() > hi:
                raise ValueError(f"plausible range of {name} [{lo}, {hi}] rejects dataset values")
        rows.append(
            {
                "name": name,
                "dtype": "float32",
                "unit": units[name],
                "description": descriptions[name],
                "min": _round_out(lo, down=True),
                "max": _round_out(hi, down=False),
                "train_min": _short(col.min()),
                "train_max": _short(col.max()),
                "train_mean": round(float(col.mean()), 6),
                "allowed": list(allowed[name]) if name in allowed else None,
            }
        )
    return rows
