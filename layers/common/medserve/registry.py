"""Model registry: manifests read at init, sha256 checked, one session per model.

Layout (the ModelsLayer puts it at ``/opt/models``; ``MEDSERVE_MODELS_DIR``
overrides)::

    <models_dir>/<model_id>/live.json                  {"live": "1.0.0", "retired": [...], "history": [...]}
    <models_dir>/<model_id>/<version>/{model.onnx, manifest.json, card.md, golden.json}

Several versions of a model are served side by side. ``live.json`` names the live one
(without it, the highest version is live); versions it lists as ``retired`` are
refused; the others are candidates, answered only when pinned (``?version=``). A
model whose ONNX file does not match its manifest's sha256 is refused at init: the
function fails to start rather than answer with the wrong weights.
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

from medserve import tasks
from medserve.problems import not_found

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnxruntime as ort

DEFAULT_MODELS_DIR = "/opt/models"
REQUIRED_KEYS = ("id", "version", "task", "onnx", "intended_use", "synthetic")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""A model id: URL-safe, at most 63 characters; the only caller string ever echoed."""
VERSION_PATTERN = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")
LIVE_FILE = "live.json"


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

    @cached_property
    def spec(self) -> Any:
        """What this model accepts and returns, built once by its task from the manifest."""
        return tasks.get(self.task).build_spec(self)

    def info(self) -> dict[str, Any]:
        """The API's ``Model`` object."""
        return dict(self._info)

    def version_info(self, status: str) -> dict[str, Any]:
        """This version's line in ``GET /v1/models/{id}``'s ``versions``."""
        m = self.manifest
        return {
            "version": self.version,
            "sha256": self.sha256,
            "status": status,
            "created": m.get("created"),
            "metrics": m.get("metrics", {}),
        }

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
                **tasks.get(self.task).detail(self),
            }
        )
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
    if not ID_PATTERN.match(str(manifest["id"])):
        raise ModelIntegrityError(f"{folder}: model id {manifest['id']!r} is not URL-safe")
    if manifest["task"] not in tasks.names():
        raise ModelIntegrityError(f"{folder}: unknown task {manifest['task']!r}")
    if "sha256" not in manifest["onnx"]:
        raise ModelIntegrityError(f"{folder}: manifest onnx.sha256 missing")
    return manifest


def read_release(model_dir: Path, versions: Iterable[str]) -> tuple[str, frozenset[str]]:
    """``(live version, retired versions)`` of one model folder, from its ``live.json``.

    Without the file the highest version is live and none is retired.
    """
    known = sorted(versions, key=_version_key)
    path = model_dir / LIVE_FILE
    if not path.is_file():
        return known[-1], frozenset()
    try:
        release = json.loads(path.read_text(encoding="utf-8"))
        live = str(release["live"])
        retired = frozenset(str(v) for v in release.get("retired", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"{path}: unreadable ({exc})") from exc
    if live not in known:
        raise ModelIntegrityError(f"{path}: live version {live} has no folder")
    if live in retired:
        raise ModelIntegrityError(f"{path}: live version {live} is also retired")
    return live, retired


def discover(models_dir: Path) -> dict[str, list[Path]]:
    """Every version folder (one holding a ``manifest.json``) of each model id."""
    found: dict[str, list[Path]] = {}
    if not models_dir.is_dir():
        return found
    for manifest_file in sorted(models_dir.glob("*/*/manifest.json")):
        folder = manifest_file.parent
        found.setdefault(folder.parent.name, []).append(folder)
    return {k: sorted(v, key=lambda f: _version_key(f.name)) for k, v in sorted(found.items())}


class Model:
    """All versions of one model id, and which one is live."""

    def __init__(self, versions: dict[str, ModelEntry], live: str, retired: frozenset[str]) -> None:
        self.versions = versions
        self.live = versions[live]
        self.retired = retired
        self.id = self.live.id
        self.task = self.live.task

    def status(self, version: str) -> str:
        if version == self.live.version:
            return "live"
        return "retired" if version in self.retired else "candidate"

    def served(self) -> list[ModelEntry]:
        """The versions that answer (live and candidates), oldest first."""
        return [e for v, e in self.versions.items() if v not in self.retired]


class Registry:
    """The models one function serves, every version of each.

    Parameters
    ----------
    models
        One :class:`Model` per id.
    """

    def __init__(self, models: Iterable[Model]) -> None:
        self._models = {m.id: m for m in models}

    @classmethod
    def load(cls, models_dir: Path | str, task: str | None = None, *, sessions: bool = True) -> Registry:
        """Read every manifest under ``models_dir``; verify; open sessions for ``task``.

        Only served versions (live and candidates) of ``task``'s models get a session
        (all tasks when ``task`` is None), but every version is verified, so a function
        never serves a tampered file.
        """
        models = []
        for model_id, folders in discover(Path(models_dir)).items():
            versions: dict[str, ModelEntry] = {}
            for folder in folders:
                manifest = read_manifest(folder)
                if manifest["id"] != model_id:
                    raise ModelIntegrityError(f"{folder}: manifest id {manifest['id']!r} != folder name")
                if str(manifest["version"]) != folder.name:
                    raise ModelIntegrityError(f"{folder}: manifest version {manifest['version']!r} != folder name")
                entry = ModelEntry(folder, manifest)
                entry.verify()
                versions[entry.version] = entry
            live, retired = read_release(Path(models_dir) / model_id, versions)
            model = Model(versions, live, retired)
            if sessions and (task is None or model.task == task):
                for entry in model.served():
                    entry.load_session()
            models.append(model)
        return cls(models)

    @classmethod
    def from_env(cls, task: str | None = None, *, sessions: bool = True) -> Registry:
        """:meth:`load` from ``MEDSERVE_MODELS_DIR`` (default ``/opt/models``)."""
        return cls.load(os.environ.get("MEDSERVE_MODELS_DIR", DEFAULT_MODELS_DIR), task, sessions=sessions)

    def models(self, task: str | None = None) -> list[Model]:
        """Every model id, optionally of one task, sorted by id."""
        return [m for _, m in sorted(self._models.items()) if task is None or m.task == task]

    def entries(self, task: str | None = None) -> list[ModelEntry]:
        """The live version of every model, optionally of one task, sorted by id."""
        return [m.live for m in self.models(task)]

    def all_entries(self, task: str | None = None) -> list[ModelEntry]:
        """Every served version (live and candidates) of every model, by id then version."""
        return [e for m in self.models(task) for e in m.served()]

    def ids(self) -> list[str]:
        return sorted(self._models)

    def model(self, model_id: str, task: str | None = None) -> Model:
        """The model ``model_id``; a 404 problem if unknown or served by another task's route."""
        model = self._models.get(model_id)
        if model is None or (task is not None and model.task != task):
            known = ", ".join(m.id for m in self.models(task)) or "none"
            where = f" for task '{task}'" if task else ""
            # Echo the id only when it looks like one (a batch key segment could be anything).
            shown = f"'{model_id}'" if ID_PATTERN.match(model_id) else "with the requested id"
            raise not_found(f"no model {shown}{where}; available: {known}")
        return model

    def get(self, model_id: str, task: str | None = None, version: str | None = None) -> ModelEntry:
        """The live version of ``model_id``, or the pinned ``version``; a 404 problem otherwise.

        An unknown or retired version is a 404 naming the versions that answer.
        """
        model = self.model(model_id, task)
        if version is None:
            return model.live
        entry = model.versions.get(version)
        if entry is None or version in model.retired:
            served = ", ".join(e.version for e in model.served())
            shown = f" {version}" if VERSION_PATTERN.match(version) else ""
            state = "is retired" if entry is not None else "does not exist"
            raise not_found(f"version{shown} of model '{model.id}' {state}; versions served: {served}")
        return entry

    def versions(self, model_id: str) -> list[dict[str, Any]]:
        """``GET /v1/models/{id}``'s ``versions``: every version with its status."""
        model = self.model(model_id)
        return [e.version_info(model.status(v)) for v, e in model.versions.items()]
