"""Lay the built layers out as Lambda does: ``<dest>/opt/python`` and ``<dest>/opt/models``.

Lambda extracts every layer of a function into ``/opt``: the runtime and common layers
both bring a ``python/`` folder (merged into ``/opt/python``, on ``sys.path``), the models
layer brings ``models/``. The benchmark and the byte-code test run the handlers from
this layout, so they measure and check what ships, not the development virtualenv.

The runtime layer is taken as ``make layer`` built it (``.build/runtime/python``); the
common and models layers are built here by their own Makefile targets, as ``sam build``
runs them.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LAYER = REPO_ROOT / ".build" / "runtime" / "python"
LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
"""What Lambda's python3.12 runtime itself brings (``/var/runtime``, after ``/opt/python`` on ``sys.path``)."""


def build_layer(name: str, artifacts: Path) -> Path:
    """Run ``make build-<name>Layer`` of ``layers/<name>`` into ``artifacts``; return it.

    Parameters
    ----------
    name
        ``"common"`` or ``"models"`` (the runtime layer is built once by ``make layer``).
    """
    cmd = ["make", "-s", "-C", str(REPO_ROOT / "layers" / name), f"build-{name.capitalize()}Layer"]
    cmd.append(f"ARTIFACTS_DIR={artifacts}")
    if sys.version_info[:2] == (3, 12):
        cmd.append(f"PYTHON={sys.executable}")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return artifacts


def lambda_opt(dest: Path, *, runtime: Path = RUNTIME_LAYER, copy: bool = False, read_only: bool = False) -> Path:
    """Build ``dest/opt`` from the layers (and ``dest/var-runtime``: :func:`lambda_runtime_dir`); return it.

    Parameters
    ----------
    dest
        An empty (or new) scratch folder.
    runtime
        The built runtime layer's ``python/`` folder.
    copy
        Copy the runtime layer (else link its top-level entries: cheap, same files).
    read_only
        Remove every write bit under ``opt`` afterwards, as Lambda's ``/opt`` is
        (call :func:`make_writable` before deleting it).
    """
    if not (runtime / "numpy").is_dir():
        raise FileNotFoundError(f"no built runtime layer at {runtime}: run `make layer`")
    opt = dest / "opt"
    python = opt / "python"
    if copy:
        shutil.copytree(runtime, python, symlinks=True)
    else:
        python.mkdir(parents=True)
        for child in runtime.iterdir():
            (python / child.name).symlink_to(child, target_is_directory=child.is_dir())
    common = build_layer("common", dest / "common-layer")
    for child in (common / "python").iterdir():
        target = python / child.name
        if target.is_symlink() or target.exists():
            raise FileExistsError(f"{child.name} is in both the runtime and the common layer")
        shutil.move(str(child), target)
    models = build_layer("models", dest / "models-layer")
    shutil.move(str(models / "models"), opt / "models")
    lambda_runtime_dir(dest)
    if read_only:
        make_read_only(opt)
    return opt


def lambda_runtime_dir(dest: Path) -> Path:
    """``dest/var-runtime``: links to the packages Lambda's runtime brings (boto3 and its deps), from this venv.

    Append it to ``sys.path`` after ``opt/python``; the rest of the development venv stays
    out of reach (its other packages and their metadata are not on Lambda).
    """
    import importlib.util

    out = dest / "var-runtime"
    out.mkdir(parents=True, exist_ok=True)
    for name in LAMBDA_RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (out / source.name).symlink_to(source, target_is_directory=source.is_dir())
        for info in source.parent.glob(f"{name}-*.dist-info"):
            (out / info.name).symlink_to(info, target_is_directory=True)
    return out


def make_read_only(path: Path) -> None:
    """Remove every write bit under ``path``, as Lambda's ``/opt`` is read-only."""
    _chmod_tree(path, writable=False)


def make_writable(path: Path) -> None:
    """Give back the owner's write bit under ``path`` (so it can be deleted)."""
    _chmod_tree(path, writable=True)


def _chmod_tree(root: Path, *, writable: bool) -> None:
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath, n) for n in dirnames + filenames]
    if not writable:
        paths.reverse()  # children first, while their folders can still be changed
    for path in paths:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        new = mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        os.chmod(path, new)
