"""``python -m model_export``: train, export, gate and document MedServe models.

Examples
--------
``python -m model_export --all`` (what ``make models`` runs),
``python -m model_export --model breast-cancer --out /tmp/models --quick``.

Every model module exposes ``build(out_root: Path, *, quick: bool = False, **kw) -> Path``
(or another function, named after a colon) and writes ``<out_root>/<id>/<version>/``.
``--model ID`` builds that id's first version; later versions are ``ID@VERSION``
(``--model vitals-deterioration@2.0.0``). A failed parity gate exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Quiet TensorFlow's C++ logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: model id (``id@version`` after the first) -> module with a ``build`` function, or ``module:function``.
MODELS: dict[str, str] = {
    "breast-cancer": "model_export.breast_cancer",
    "breast-cancer@1.1.0": "model_export.breast_cancer:build_1_1_0",
    "diabetes-progression": "model_export.diabetes",
    "chest-xray": "model_export.chest_xray",
    "vitals-deterioration": "model_export.vitals",
    "vitals-deterioration@2.0.0": "model_export.vitals_transformer",
}

log = logging.getLogger("model_export")


def available() -> dict[str, str]:
    """Models whose module exists (chest-xray and vitals are optional)."""
    return {mid: mod for mid, mod in MODELS.items() if importlib.util.find_spec(mod.split(":")[0]) is not None}


def build(model_id: str, out_root: Path, *, quick: bool = False) -> Path:
    """Build one model by id and return its folder."""
    mods = available()
    if model_id not in mods:
        raise KeyError(f"unknown model {model_id!r}; known: {sorted(mods)}")
    module_name, _, fn_name = mods[model_id].partition(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, fn_name or "build", None)
    if fn is None:
        raise AttributeError(f"{mods[model_id]} has no build(out_root, **kw)")
    return Path(fn(out_root, quick=quick))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m model_export", description=__doc__.splitlines()[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="build every known model")
    which.add_argument("--model", action="append", metavar="ID", help="build this model (repeatable)")
    which.add_argument("--list", action="store_true", help="list the models this checkout can build")
    ap.add_argument("--out", type=Path, default=Path("layers/models"), help="output root (default layers/models)")
    ap.add_argument("--quick", action="store_true", help="few epochs and bootstrap rounds (tests)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.list:
        print("\n".join(available()))
        return 0
    ids = list(available()) if args.all else list(args.model)
    failed: list[str] = []
    for mid in ids:
        t0 = time.perf_counter()
        try:
            path = build(mid, args.out, quick=args.quick)
        except Exception:
            log.exception("model %s failed", mid)
            failed.append(mid)
            continue
        log.info("model %s written to %s in %.1f s", mid, path, time.perf_counter() - t0)
    if failed:
        log.error("failed: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
