"""Locked test splits of the change-control plans (``layers/models/<id>/locked_test.npz``).

A plan (``layers/models/<id>/change_control.json``) names the held-out split every
candidate is compared on. The split is DERIVED here from the data set and the seed,
exactly as the exporters derive their test split, and MATERIALISED as
``locked_test.npz`` beside the plan so the promotion gate needs only NumPy and ONNX
Runtime: ``indices`` (row indices in the data set, or patient numbers), ``y`` (labels
or targets) and ``in:<onnx input>`` arrays exactly as the served model receives them.

The plan stores ``indices_sha256`` and ``data_sha256`` (:func:`arrays_sha256`): the gate
refuses a file that does not match them, and ``--check`` re-derives the split from the
data (scikit-learn, ``.venv-export``) and compares. A split too large to store but cheap to
generate without scikit-learn (``chest-xray``: 320 synthetic radiographs) has
``"file": null, "derive_at_gate": true`` and is derived by the gate itself, then checked
against the same hashes.

Examples
--------
``python -m model_export.locked --write breast-cancer`` (prints the hashes for the plan),
``python -m model_export.locked --check`` (every plan).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from model_export.splits import SEED

LOCKED_FILE = "locked_test.npz"
#: model ids whose locked split can be derived here.
DERIVABLE = ("breast-cancer", "chest-xray", "diabetes-progression", "vitals-deterioration")

__all__ = ["DERIVABLE", "LOCKED_FILE", "arrays_sha256", "derive", "indices_sha256", "load", "main", "write"]


def indices_sha256(indices: np.ndarray) -> str:
    """SHA-256 of the indices as little-endian int64 bytes (the plan's ``indices_sha256``)."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over arrays by sorted key: name, dtype, shape and C-order bytes (not the zip container)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def derive(model_id: str, *, seed: int = SEED) -> dict[str, np.ndarray]:
    """Derive the locked test split of ``model_id`` from its data set (needs scikit-learn).

    Returns
    -------
    dict
        ``{"indices", "y", "in:<onnx input>": array, ...}``.
    """
    if model_id == "breast-cancer":
        from model_export import breast_cancer

        x, y, _ = breast_cancer.load()
        te = breast_cancer.split(y, seed)[2]
        return {"indices": te.astype(np.int64), "y": y[te].astype(np.int64), "in:features": x[te]}
    if model_id == "diabetes-progression":
        from model_export import diabetes

        x, t, _ = diabetes.load()
        te = diabetes.split(t, seed)[2]
        return {"indices": te.astype(np.int64), "y": t[te].astype(np.float32), "in:features": x[te]}
    if model_id == "vitals-deterioration":
        from model_export import vitals

        cohort = vitals.synthetic_cohort(vitals.N_PATIENTS, seed=seed)
        te = vitals.split(cohort, seed)[2]
        x_te, m_te = vitals.feat.pad_batch([cohort.sequences[i] for i in te])
        return {
            "indices": te.astype(np.int64),
            "y": cohort.y[te].astype(np.int64),
            "in:observations": x_te,
            "in:mask": m_te,
        }
    if model_id == "chest-xray":  # NumPy + the serving decoder only: the gate derives it itself
        from model_export import chest_xray

        images, labels = chest_xray.synthetic_radiographs(
            chest_xray.N_SYNTHETIC - round(chest_xray.N_SYNTHETIC * 0.64) - round(chest_xray.N_SYNTHETIC * 0.16),
            seed=seed + 34,
        )
        return {
            "indices": np.arange(len(labels), dtype=np.int64),
            "y": labels.astype(np.int64),
            "in:image": chest_xray._prepare(images),
        }
    raise KeyError(f"no locked split derivation for {model_id!r}; known: {list(DERIVABLE)}")


def write(model_id: str, root: Path) -> dict[str, object]:
    """Derive and write ``<root>/<model_id>/locked_test.npz``; return the plan's hash fields."""
    arrays = derive(model_id)
    path = Path(root) / model_id / LOCKED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return summary(arrays)


def summary(arrays: Mapping[str, np.ndarray]) -> dict[str, object]:
    """``n``, ``indices_sha256`` and ``data_sha256`` of a locked split."""
    return {
        "n": int(len(arrays["indices"])),
        "indices_sha256": indices_sha256(arrays["indices"]),
        "data_sha256": arrays_sha256(arrays),
    }


def load(folder: Path, plan: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Load a model id's locked split and check it against its plan (NumPy only).

    Raises
    ------
    ValueError
        If the file is missing or does not match the plan's hashes.
    """
    spec = plan["locked_test"]
    assert isinstance(spec, Mapping)
    name = spec.get("file")
    if name:
        path = Path(folder) / str(name)
        if not path.is_file():
            raise ValueError(f"{folder.name}: locked test split {path.name} is missing")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    elif spec.get("derive_at_gate"):
        arrays = derive(Path(folder).name, seed=int(spec["seed"]))
    else:
        raise ValueError(f"{folder.name}: the plan's locked test split is not materialised ({spec.get('derivation')})")
    got = summary(arrays)
    for key in ("n", "indices_sha256", "data_sha256"):
        if got[key] != spec.get(key):
            raise ValueError(f"{folder.name}: locked test split {key} {got[key]} != plan {spec.get(key)}")
    return arrays


def check(model_id: str, root: Path) -> list[str]:
    """Re-derive ``model_id``'s split and compare with its plan and file; return the problems."""
    plan = json.loads((Path(root) / model_id / "change_control.json").read_text(encoding="utf-8"))
    want = summary(derive(model_id, seed=int(plan["locked_test"]["seed"])))
    problems = [
        f"{model_id}: derived {k} {want[k]} != plan {plan['locked_test'].get(k)}"
        for k in ("n", "indices_sha256", "data_sha256")
        if want[k] != plan["locked_test"].get(k)
    ]
    if plan["locked_test"].get("file"):
        try:
            load(Path(root) / model_id, plan)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--write ID...`` or ``--check [ID...]``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m model_export.locked", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("layers/models"))
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", nargs="+", metavar="ID")
    mode.add_argument("--check", nargs="*", metavar="ID")
    args = ap.parse_args(argv)
    if args.write:
        for mid in args.write:
            print(mid, json.dumps(write(mid, args.root), sort_keys=True))
        return 0
    problems = [p for mid in (args.check or DERIVABLE) for p in check(mid, args.root)]
    print("\n".join(problems) or "locked splits match their plans")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
