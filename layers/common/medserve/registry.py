"""Model registry: manifests read at init, sha256 checked, one session per model.

Layout (the ModelsLayer puts it at ``/opt/models``; ``MEDSERVE_MODELS_DIR``
overrides)::

    <models_dir>/<model_id>/<version>/{model.onnx, manifest.json, card.md}

The highest version of each id is served. A model whose ONNX file does not match
its manifest's sha256 is refused at init: the function fails to start rather than
answer with the wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medserve.problems import not_found

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnxruntime as ort

DEFAULT_MODELS_DIR = "/opt/models"
TASKS = ("risk", "imaging", "vitals")
REQUIRED_KEYS = ("id", "version", "task", "onnx", "intended_use", "synthetic")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class ModelIntegrityError(RuntimeError):
    """A model folder is unusable: bad manifest or an ONNX file that fails its sha256."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version_key(version: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", version)
    return tuple(int(p) for p in parts) or (0,)


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("MEDSERVE_ORT_THREADS", "1")))
    except ValueError:
        return 1


class ModelEntry:
    """One served model: its manifest, folder and (optionally) ONNX Runtime session.

    Parameters
    ----------
    path
        The version folder holding ``manifest.json`` and the ONNX file.
    manifest
        The parsed manifest.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.id: str = manifest["id"]
        self.version: str = manifest["version"]
        self.task: str = manifest["task"]
        self.sha256: str = manifest["onnx"]["sha256"]
        self.synthetic: bool = bool(manifest.get("synthetic", False))
        self.session: ort.InferenceSession | None = None
        self._info = {
            "id": self.id,
            "version": self.version,
            "task": self.task,
            "sha256": self.sha256,
            "synthetic": self.synthetic,
            "intended_use": manifest["intended_use"],
        }

    @property
    def onnx_path(self) -> Path:
        return self.path / self.manifest["onnx"].get("file", "model.onnx")

    def verify(self) -> None:
        """Raise :class:`ModelIntegrityError` unless the ONNX file matches the manifest."""
        if not self.onnx_path.is_file():
            raise ModelIntegrityError(f"{self.id} {self.version}: {self.onnx_path.name} is missing")
        actual = sha256_file(self.onnx_path)
        if actual != self.sha256:
            raise ModelIntegrityError(
                f"{self.id} {self.version}: sha256 of {self.onnx_path.name} is {actual}, "
                f"manifest says {self.sha256}; refusing to serve it"
            )

    def load_session(self) -> None:
        """Create the ONNX Runtime session once, with explicit thread counts."""
        import onnxruntime as ort  # deferred: the models function never needs it

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])

    @cached_property
    def output_names(self) -> list[str]:
        assert self.session is not None, "session not loaded"
        return [o.name for o in self.session.get_outputs()]

    @cached_property
    def input_names(self) -> list[str]:
        assert self.session is not None, "session not loaded"
        return [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``session.run``; returns output name -> array."""
        if self.session is None:
            raise RuntimeError(f"{self.id}: session not loaded in this function")
        outputs = self.session.run(None, feeds)
        return dict(zip(self.output_names, outputs, strict=True))

    def info(self) -> dict[str, Any]:
        """The API's ``Model`` object."""
        return dict(self._info)

    def detail(self) -> dict[str, Any]:
        """``Model`` plus inputs, outputs, metrics and the card (markdown)."""
        m = self.manifest
        card_file = self.path / m.get("files", {}).get("card", "card.md")
        card = card_file.read_text(encoding="utf-8") if card_file.is_file() else ""
        body = self.info()
        body.update(
            {
                "kind": m.get("kind"),
                "inputs": m.get("inputs", []),
                "outputs": m.get("outputs", {}),
                "metrics": m.get("metrics", {}),
                "calibration": m.get("calibration"),
                "training_data": m.get("training_data"),
                "not_for_clinical_use": m.get("not_for_clinical_use"),
                "card": card,
            }
        )
        for extra in ("image", "vitals"):
            if extra in m:
                body[extra] = m[extra]
        return body


def read_manifest(folder: Path) -> dict[str, Any]:
    """Parse and minimally check one manifest."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"{folder}: unreadable manifest.json ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ModelIntegrityError(f"{folder}: manifest lacks {', '.join(missing)}")
    if not _ID_RE.match(str(manifest["id"])):
        raise ModelIntegrityError(f"{folder}: model id {manifest['id']!r} is not URL-safe")
    if manifest["task"] not in TASKS:
        raise ModelIntegrityError(f"{folder}: unknown task {manifest['task']!r}")
    if "sha256" not in manifest["onnx"]:
        raise ModelIntegrityError(f"{folder}: manifest onnx.sha256 missing")
    return manifest


def discover(models_dir: Path) -> list[Path]:
    """The version folder to serve for each model id (highest version wins)."""
    best: dict[str, tuple[tuple[int, ...], Path]] = {}
    if not models_dir.is_dir():
        return []
    for manifest_file in sorted(models_dir.glob("*/*/manifest.json")):
        folder = manifest_file.parent
        model_id = folder.parent.name
        key = _version_key(folder.name)
        if model_id not in best or key > best[model_id][0]:
            best[model_id] = (key, folder)
    return [folder for _, folder in sorted(best.values(), key=lambda kv: kv[1].parent.name)]


class Registry:
    """The models one function serves.

    Parameters
    ----------
    entries
        Loaded models.
    """

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self._entries = {e.id: e for e in entries}

    @classmethod
    def load(cls, models_dir: Path | str, task: str | None = None, *, sessions: bool = True) -> Registry:
        """Read every manifest under ``models_dir``; verify; open sessions for ``task``.

        Only models of ``task`` get a session (all models when ``task`` is None),
        but every model is verified, so a function never serves a tampered file.
        """
        entries = []
        for folder in discover(Path(models_dir)):
            manifest = read_manifest(folder)
            if manifest["id"] != folder.parent.name:
                raise ModelIntegrityError(f"{folder}: manifest id {manifest['id']!r} != folder name")
            entry = ModelEntry(folder, manifest)
            entry.verify()
            if sessions and (task is None or entry.task == task):
                entry.load_session()
            entries.append(entry)
        return cls(entries)

    @classmethod
    def from_env(cls, task: str | None = None, *, sessions: bool = True) -> Registry:
        """:meth:`load` from ``MEDSERVE_MODELS_DIR`` (default ``/opt/models``)."""
        return cls.load(os.environ.get("MEDSERVE_MODELS_DIR", DEFAULT_MODELS_DIR), task, sessions=sessions)

    def entries(self, task: str | None = None) -> list[ModelEntry]:
        """All models, optionally of one task, sorted by id."""
        return [e for _, e in sorted(self._entries.items()) if task is None or e.task == task]

    def ids(self) -> list[str]:
        return sorted(self._entries)

    def get(self, model_id: str, task: str | None = None) -> ModelEntry:
        """The model ``model_id``; a 404 problem if unknown or served by another task's route."""
        entry = self._entries.get(model_id)
        if entry is None or (task is not None and entry.task != task):
            known = ", ".join(e.id for e in self.entries(task)) or "none"
            where = f" for task '{task}'" if task else ""
            # Echo the id only when it looks like one (a batch key segment could be anything).
            shown = f"'{model_id}'" if _ID_RE.match(model_id) else "with the requested id"
            raise not_found(f"no model {shown}{where}; available: {known}")
        return entry
