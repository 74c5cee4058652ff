"""``chest-xray``: a small Keras CNN for frontal chest radiographs, with an in-graph CAM.

Labels ``["normal", "pneumonia"]``. Input ``image`` ``float32 [N, 128, 128, 1]`` in
``[0, 1]`` (0 = black as displayed), exactly what :func:`medserve.tasks.imaging.decode.to_model_input`
produces; the graph standardises every image itself (zero mean, unit variance), so
brightness and contrast offsets between sources do not matter.

Architecture: per-image standardisation -> 4 conv blocks (3x3 conv + ReLU + BatchNorm, max-pool
after the first three) -> 16x16x64 feature map -> a Dense(2) head applied at every
location (a 1x1 convolution with the dense kernel) -> temperature scaling ->
global average pooling -> softmax. Because pooling and the dense head are both
linear they commute: this is the classic "GAP then Dense" classifier, and the
per-location class scores are its class activation map. The ONNX graph has two
outputs: ``probabilities`` ``[N, 2]`` and ``cam`` ``[N, 16, 16]`` = pneumonia score
minus normal score at each location, whose mean over the grid is exactly the
calibrated log-odds of pneumonia. An explanation costs no second pass.

Data: a MedMNIST-format ``.npz`` (PneumoniaMNIST layout: ``train_images``,
``train_labels``, ``val_*``, ``test_*``; images ``uint8 [N, H, W]``, labels 0 =
normal, 1 = pneumonia) when one is given; otherwise a synthetic radiograph-like
set generated here (manifest ``"synthetic": true``).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_export.calibration import reliability_table
from model_export.cards import render_card
from model_export.export import OPSET, ParityError, export_onnx, onnx_io, parity_gate, sha256_file, versions
from model_export.manifest import write_model_folder
from model_export.metrics import DEFAULT_N_BOOT, binary_metrics, choose_threshold
from model_export.plots import plot_calibration, plot_roc
from model_export.splits import SEED, set_seeds

MODEL_ID = "chest-xray"
VERSION = "1.0.0"
CREATED = "2026-11-23"  # manifest "created": the day this version was first exported
LABELS = ["normal", "pneumonia"]
FHIR_TEXT = {
    "report_text": "AI analysis of a chest radiograph",
    "finding_text": "AI chest radiograph classification (normal vs pneumonia)",
}
"""How the FHIR DiagnosticReport and its finding Observation name this model's result."""
POSITIVE = "pneumonia"
SIZE = 128
CAM_SIZE = 16
MIN_SIZE = 64
MODALITIES = ["CR", "DX"]
THRESHOLD_RULE = "youden"
N_SYNTHETIC = 1600
N_SYNTHETIC_QUICK = 480
EPOCHS = 10
QUICK_EPOCHS = 4
LEARNING_RATE = 1e-3
PATIENCE_FROM_EPOCH = 4
PARITY_SAMPLES = 8
PROB_PARITY_TOLERANCE = 1e-4
CAM_PARITY_RELATIVE = 1e-4
CAM_PER_IMAGE_RELATIVE = 1e-3
NORMALIZATION = (
    "float32 in [0, 1], 0 = black as displayed (PNG/JPEG: value / 255, 16-bit PNG: value / 65535; "
    "DICOM: Modality LUT, then VOI LUT or first window, then min-max, MONOCHROME1 inverted); the whole "
    "image resized to 128x128 (Pillow bilinear, antialiased, aspect ratio not kept); the ONNX graph "
    "then standardises each image to zero mean and unit variance"
)

log = logging.getLogger("model_export.chest_xray")

_COMMON = Path(__file__).resolve().parents[1] / "layers" / "common"
if str(_COMMON) not in sys.path:  # `python -m model_export` from the repo root: reuse the serving code
    sys.path.append(str(_COMMON))


# --- data ---------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, grid: int, size: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random ``grid x grid`` field upsampled bilinearly."""
    from PIL import Image

    small = rng.random((grid, grid)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def _soft(inside: np.ndarray, edge: float) -> np.ndarray:
    """Soft mask from a signed "distance" (<1 inside an ellipse)."""
    return 1.0 / (1.0 + np.exp(np.clip((inside - 1.0) / edge, -50.0, 50.0)))


def synthetic_radiographs(n: int, *, seed: int = SEED, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Generate frontal-chest-radiograph-like images; half of them with "pneumonia".

    A bright thorax on dark air, two dark lung fields, mediastinum and heart shadow,
    curved ribs, varying pose, exposure and noise. "Pneumonia" adds one to three
    patchy, textured opacities inside the lung fields, from subtle to dense; some
    normal images carry small focal densities (vessels end-on, nipple shadows) as
    confounders, so the task is not trivially separable.

    Returns
    -------
    tuple
        ``(images uint8 [n, size, size], labels int64 [n])``, like a MedMNIST split.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j].astype(np.float32)
    images = np.empty((n, size, size), dtype=np.uint8)
    labels = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(labels)
    for i in range(n):
        ang = rng.normal(0, 0.05)
        sc = rng.uniform(0.9, 1.08)
        cx, cy = rng.normal(0, 0.04, 2)
        x = ((xx - cx) * np.cos(ang) - (yy - cy) * np.sin(ang)) / sc
        y = ((xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)) / sc
        thorax = _soft((x / 0.86) ** 2 + ((y - 0.08) / 0.98) ** 2, 0.04)
        lungs = np.zeros_like(x)
        for side in (-1.0, 1.0):
            lx, ly = side * rng.uniform(0.34, 0.42), rng.uniform(-0.1, 0.0)
            rx, ry = rng.uniform(0.24, 0.3), rng.uniform(0.5, 0.6)
            lungs = np.maximum(lungs, _soft(((x - lx) / rx) ** 2 + ((y - ly) / ry) ** 2, 0.06))
        heart = _soft(((x - 0.12) / rng.uniform(0.22, 0.3)) ** 2 + ((y - 0.3) / 0.22) ** 2, 0.08)
        spine = _soft((x / 0.07) ** 2, 0.3) * thorax
        ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (6.5 * (y + 0.35 * x**2)) + rng.uniform(0, 2 * np.pi))
        ribs = (ribs > 0.75).astype(np.float32) * lungs
        img = 0.07 + 0.55 * thorax - 0.33 * lungs + 0.14 * heart + 0.12 * spine + 0.07 * ribs
        if labels[i] == 1:
            for _ in range(rng.integers(1, 4)):
                # centre inside a lung field
                ys, xs = np.nonzero(lungs > 0.8)
                k = rng.integers(len(ys))
                oy, ox = yy[ys[k], xs[k]], xx[ys[k], xs[k]]
                r = rng.uniform(0.08, 0.22)
                blob = np.exp(-(((xx - ox) ** 2 + (yy - oy) ** 2) / (2 * r**2)))
                texture = _smooth_noise(rng, 12, size)
                strength = rng.uniform(0.06, 0.3)
                img = img + strength * blob * (0.4 + 0.6 * texture) * lungs
        for _ in range(rng.integers(0, 3)):
            ys, xs = np.nonzero(lungs > 0.5)
            k = rng.integers(len(ys))
            r = rng.uniform(0.015, 0.04)
            dot = np.exp(-(((xx - xx[ys[k], xs[k]]) ** 2 + (yy - yy[ys[k], xs[k]]) ** 2) / (2 * r**2)))
            img = img + rng.uniform(0.05, 0.15) * dot
        img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 0.03)
        img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
        img = img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape)
        images[i] = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return images, labels


def _prepare(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, H, W]`` (or ``[N, H, W, C]``) -> float32 ``[N, 128, 128, 1]`` via the serving code."""
    from medserve.tasks.imaging.decode import ImageSpec, to_model_input

    spec = ImageSpec(height=SIZE, width=SIZE)
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 3:
        arr = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"images must be [N, H, W] (or [N, H, W, 1|3]); got shape {list(np.shape(images))}")
    scale = 255.0 if arr.dtype == np.uint8 or arr.max() > 1.0 else 1.0
    out = np.empty((len(arr), SIZE, SIZE, 1), dtype=np.float32)
    for i, img in enumerate(arr):
        out[i] = to_model_input(np.asarray(img, dtype=np.float32) / scale, spec)[0]
    return out


def load_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load a MedMNIST-format binary ``.npz`` (PneumoniaMNIST layout) for training.

    Parameters
    ----------
    path
        File with ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
        ``test_images``, ``test_labels``; images ``uint8 [N, H, W]`` (or with a channel
        axis), labels ``[N]`` or ``[N, 1]`` in {0 = normal, 1 = pneumonia}.

    Returns
    -------
    dict
        ``{"train"|"val"|"test": (x float32 [N, 128, 128, 1] in [0, 1], y int64 [N])}``.

    Raises
    ------
    ValueError
        If a key is missing, shapes disagree, or labels are not binary.
    """
    with np.load(path, allow_pickle=False) as z:
        wanted = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")]
        missing = [name for name in wanted if name not in z]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing} (MedMNIST layout expected)")
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split in ("train", "val", "test"):
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1 or len(labels) != len(images):
                raise ValueError(f"{path}: {split}_labels must be [N] or [N, 1] matching {split}_images")
            if not np.isin(labels, (0, 1)).all():
                raise ValueError(f"{path}: {split}_labels must be binary (0 = normal, 1 = pneumonia)")
            if len(np.unique(labels)) < 2:
                raise ValueError(f"{path}: {split} split must contain both classes")
            out[split] = (_prepare(images), labels.astype(np.int64))
    return out


def synthetic_splits(n: int, seed: int = SEED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Synthetic 64/16/20 train/validation/test splits (independent draws per split)."""
    sizes = {"train": round(n * 0.64), "val": round(n * 0.16), "test": n - round(n * 0.64) - round(n * 0.16)}
    out = {}
    for k, (split, m) in enumerate(sizes.items()):
        images, labels = synthetic_radiographs(m, seed=seed + 17 * k)
        out[split] = (_prepare(images), labels)
    return out


# --- model --------------------------------------------------------------------------------
def _layers() -> dict[str, Any]:
    """The trainable layers, shared by the training and the exported graph."""
    import keras

    class PerImageStandardization(keras.layers.Layer):
        """``(x - mean) / sqrt(var + eps)`` over each image's pixels."""

        def call(self, x: Any) -> Any:
            ops = keras.ops
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            var = ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
            return (x - mean) / ops.sqrt(var + 1e-4)

    conv = keras.layers.Conv2D
    return {
        "standardize": PerImageStandardization(name="standardize"),
        "convs": [
            conv(16, 3, padding="same", activation="relu", name="conv1"),
            conv(32, 3, padding="same", activation="relu", name="conv2"),
            conv(64, 3, padding="same", activation="relu", name="conv3"),
            conv(64, 3, padding="same", activation="relu", name="conv4"),
        ],
        # BatchNorm (momentum 0.9: its moving statistics settle within the few hundred steps we train)
        # is folded into the convolutions at inference, so it costs nothing in the ONNX graph.
        "norms": [keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}") for i in (1, 2, 3, 4)],
        "pools": [keras.layers.MaxPooling2D(2, name=f"pool{i}") for i in (1, 2, 3)],
        "dropout": keras.layers.SpatialDropout2D(0.1, name="dropout"),
        "head": keras.layers.Dense(len(LABELS), name="dense_head"),
    }


def _features(parts: dict[str, Any], inp: Any, *, training_graph: bool) -> Any:
    h = parts["standardize"](inp)
    for i, c in enumerate(parts["convs"]):
        h = parts["norms"][i](c(h))
        if i < 3:
            h = parts["pools"][i](h)
    if training_graph:
        h = parts["dropout"](h)
    return h  # [N, 16, 16, 64]


def training_model(parts: dict[str, Any]) -> Any:
    """``image -> logits [N, 2]`` (GAP of the per-location dense head)."""
    import keras

    inp = keras.Input((SIZE, SIZE, 1), name="image")
    class_map = parts["head"](_features(parts, inp, training_graph=True))
    logits = keras.layers.GlobalAveragePooling2D(name="gap")(class_map)
    return keras.Model(inp, logits, name="chest_xray_train")


def serving_model(parts: dict[str, Any], temperature: float) -> Any:
    """``image -> (probabilities [N, 2], cam [N, 16, 16])`` with temperature scaling in the graph."""
    import keras

    inp = keras.Input((SIZE, SIZE, 1), name="image")
    class_map = parts["head"](_features(parts, inp, training_graph=False))  # [N, 16, 16, 2]
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(class_map)
    logits = keras.layers.GlobalAveragePooling2D(name="gap")(scaled)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    cam = keras.layers.Lambda(lambda t: t[..., 1] - t[..., 0], name="cam")(scaled)
    return keras.Model(inp, [probabilities, cam], name="chest_xray")


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature ``T`` minimising the validation NLL of ``softmax(logits / T)``."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    yy = np.asarray(y).astype(int)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(yy)), yy].mean())

    res = minimize_scalar(nll, bounds=(math.log(0.01), math.log(100.0)), method="bounded")
    return float(math.exp(res.x))


# --- build --------------------------------------------------------------------------------
def build(out_root: Path, *, quick: bool = False, npz: Path | None = None, seed: int = SEED, **_: Any) -> Path:
    """Train, calibrate, evaluate, export (tf2onnx, two outputs), gate and document the model.

    Parameters
    ----------
    out_root
        Root of the model folders; writes ``<out_root>/chest-xray/1.0.0/``.
    quick
        Fewer images, epochs and bootstrap resamples (tests).
    npz
        A MedMNIST-format ``.npz`` (e.g. PneumoniaMNIST) to train on; synthetic data without it.
    seed
        Seed of the data, the weights and the bootstrap.

    Returns
    -------
    pathlib.Path
        The model folder.

    Raises
    ------
    model_export.export.ParityError
        If ONNX Runtime disagrees with Keras on either output beyond tolerance.
    """
    import keras
    import tensorflow as tf

    set_seeds(seed)
    synthetic = npz is None
    if synthetic:
        data = synthetic_splits(N_SYNTHETIC_QUICK if quick else N_SYNTHETIC, seed)
    else:
        data = load_npz(Path(npz))  # type: ignore[arg-type]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data["train"], data["val"], data["test"]
    n_boot = 200 if quick else DEFAULT_N_BOOT

    parts = _layers()
    train = training_model(parts)
    train.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=3, restore_best_weights=True, start_from_epoch=PATIENCE_FROM_EPOCH
    )
    hist = train.fit(
        x_tr,
        y_tr,
        validation_data=(x_va, y_va),
        epochs=QUICK_EPOCHS if quick else EPOCHS,
        batch_size=32,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    epochs_run = len(hist.history["loss"])

    temperature = fit_temperature(train.predict(x_va, verbose=0, batch_size=64), y_va)
    model = serving_model(parts, temperature)
    p_val = model.predict(x_va, verbose=0, batch_size=64)[0][:, 1]
    threshold, rule_text = choose_threshold(y_va, p_val, THRESHOLD_RULE)
    k_probs, k_cam = model.predict(x_te, verbose=0, batch_size=64)
    k_probs, k_cam = k_probs.astype(np.float32), k_cam.astype(np.float32)
    p_test = k_probs[:, 1]
    metrics = binary_metrics(y_te, p_test, threshold, n_boot=n_boot, seed=seed)

    out = Path(out_root) / MODEL_ID / VERSION
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    export_onnx(
        model,
        [tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32, name="image")],
        onnx_path,
        opset=OPSET,
        output_names=["probabilities", "cam"],
    )
    # tf2onnx folds BatchNorm into the convolutions, so float32 rounding differs from Keras' unfused
    # graph through four convs: probabilities are gated at PROB_PARITY_TOLERANCE (reported to 6 decimals;
    # 1e-4 is far below any decision-relevant difference) and the decision itself must agree on every
    # test image. cam is the difference of two per-location class scores and is only ever shown
    # normalised to 8 bits by its own maximum, so it is gated RELATIVE to its scale: absolute tolerance
    # CAM_PARITY_RELATIVE x max|cam| over the test set, and per image max|diff| / max|cam_i| <= 1e-3
    # (a quarter of one grey level of the rendered heatmap).
    onnx_probs, onnx_cam = _onnx_outputs(onnx_path, x_te)
    log.info(
        "%s ONNX vs Keras max abs diff: probabilities %.3g, cam %.3g (|cam| max %.3g, T %.3f, n=%d)",
        MODEL_ID,
        float(np.abs(onnx_probs - k_probs).max()),
        float(np.abs(onnx_cam - k_cam).max()),
        float(np.abs(k_cam).max()),
        temperature,
        len(x_te),
    )
    parity = parity_gate({"probabilities": k_probs}, onnx_path, {"image": x_te}, tol=PROB_PARITY_TOLERANCE)
    cam_tol = CAM_PARITY_RELATIVE * max(float(np.abs(k_cam).max()), 1.0)
    parity_cam = parity_gate({"cam": k_cam}, onnx_path, {"image": x_te}, tol=cam_tol)
    per_image = np.abs(onnx_cam - k_cam).max(axis=(1, 2)) / np.maximum(np.abs(k_cam).max(axis=(1, 2)), 1e-6)
    cam_rel = float(per_image.max())
    if cam_rel > CAM_PER_IMAGE_RELATIVE:
        raise ParityError(f"cam differs by {cam_rel:.2g} of an image's own CAM range (> {CAM_PER_IMAGE_RELATIVE})")
    clear = np.abs(p_test - threshold) > PROB_PARITY_TOLERANCE  # not within rounding of the threshold
    same = (onnx_probs[:, 1] >= threshold) == (p_test >= threshold)
    agree = float(np.mean(same[clear])) if clear.any() else 1.0
    if agree < 1.0:
        raise ParityError(f"ONNX and Keras labels differ on {int((~same & clear).sum())} test images")
    # The CAM identity the library relies on: mean(cam) == log-odds of pneumonia.
    # (checked where float32 softmax is not saturated, i.e. both probabilities above 1e-6)
    ok = k_probs.min(axis=1) > 1e-6
    log_odds = np.log(k_probs[ok, 1].astype(np.float64)) - np.log(k_probs[ok, 0].astype(np.float64))
    cam_identity = float(np.max(np.abs(k_cam[ok].mean(axis=(1, 2)) - log_odds))) if ok.any() else 0.0

    n_total = sum(len(v[1]) for v in data.values())
    if synthetic:
        training_data: dict[str, Any] = {
            "name": "MedServe synthetic chest radiographs",
            "source": "generated in code by model_export/chest_xray.py:synthetic_radiographs (no patient data)",
            "license": "generated; no restrictions",
            "split": f"independent synthetic draws per split (64/16/20), seed {seed}",
            "synthetic": True,
        }
    else:
        training_data = {
            "name": f"MedMNIST-format file {Path(npz).name}",  # type: ignore[arg-type]
            "source": "MedMNIST v2 layout (e.g. PneumoniaMNIST, derived from Kermany et al. 2018 paediatric "
            "chest X-rays); the file given to `build(npz=...)`",
            "citation": "J. Yang et al. MedMNIST v2. Scientific Data 10, 41 (2023).",
            "license": "CC BY 4.0 (PneumoniaMNIST)",
            "split": "the file's own train/val/test splits",
            "synthetic": False,
        }
    training_data.update(
        {
            "n_total": int(n_total),
            "n_train": int(len(y_tr)),
            "n_validation": int(len(y_va)),
            "n_test": int(len(y_te)),
            "n_positive": {"train": int(y_tr.sum()), "validation": int(y_va.sum()), "test": int(y_te.sum())},
        }
    )
    io = onnx_io(onnx_path)
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "created": CREATED,
        "id": MODEL_ID,
        "version": VERSION,
        "task": "imaging",
        "kind": "classification",
        "synthetic": synthetic,
        "intended_use": (
            "Demonstration of serving an image classifier: estimate whether a frontal chest radiograph "
            "(CR/DX) shows pneumonia-like opacities, with a class activation map."
        ),
        "not_for_clinical_use": (
            (
                "It was trained only on SYNTHETIC images generated in code (ellipses, ribs and noise), "
                "never on a radiograph of a patient, so its outputs carry no clinical meaning at all. "
                if synthetic
                else "It was trained on a low-resolution research dataset from a single paediatric centre, "
                "without external or prospective validation. "
            )
            + "It has no regulatory clearance, sees a 128x128 downsampled image, and was never compared "
            "with radiologists. It must not inform the diagnosis or management of any patient."
        ),
        "onnx": {"file": "model.onnx", "sha256": "", "opset": OPSET, **io},
        "inputs": [
            {
                "name": "image",
                "dtype": "float32",
                "unit": "display intensity, 0-1",
                "description": "one greyscale radiograph, [N, 128, 128, 1]; see image.normalization",
                "min": 0.0,
                "max": 1.0,
                "allowed": None,
            }
        ],
        "image": {
            "height": SIZE,
            "width": SIZE,
            "channels": 1,
            "min_height": MIN_SIZE,
            "min_width": MIN_SIZE,
            "modalities": MODALITIES,
            "formats": ["png", "jpeg", "dicom"],
            "normalization": NORMALIZATION,
        },
        "fhir": FHIR_TEXT,
        "preprocessing": {"standardization": "in_graph", "resize": f"{SIZE}x{SIZE} bilinear, whole image"},
        "outputs": {
            "labels": LABELS,
            "positive_label": POSITIVE,
            "threshold": round(threshold, 6),
            "threshold_rule": rule_text,
            "unit": None,
            "target": "calibrated probability of each label (ONNX output `probabilities`, [N, 2], order of `labels`)",
            "cam": {
                "output": "cam",
                "shape": [None, CAM_SIZE, CAM_SIZE],
                "class": POSITIVE,
                "meaning": "pneumonia minus normal score at each location of the last 16x16 feature map "
                "(dense head applied per location, temperature-scaled); its mean over the grid equals "
                "the calibrated log-odds of pneumonia",
                "rendering": "API heatmap: positive part scaled to 0-255, bilinear upsampled to the input's "
                "aspect ratio (long side <= 512), 8-bit greyscale PNG",
                "mean_identity_max_abs_error": cam_identity,
            },
        },
        "calibration": {
            "method": "temperature",
            "params": {
                "temperature": temperature,
                "formula": "p = softmax(logits / T)",
                "fitted_on": "validation split",
            },
            "ece": metrics["ece"]["value"],
            "reliability": reliability_table(y_te, p_test),
        },
        "training_data": training_data,
        "metrics": {k: v for k, v in metrics.items() if k != "threshold"},
        "parity": {
            **{k: parity[k] for k in ("max_abs_diff", "tolerance", "rtol", "n")},
            "per_output": {
                "probabilities": {
                    "max_abs_diff": parity["max_abs_diff"],
                    "tolerance": PROB_PARITY_TOLERANCE,
                    "label_agreement": agree,
                },
                "cam": {
                    "max_abs_diff": parity_cam["max_abs_diff"],
                    "tolerance": cam_tol,
                    "tolerance_rule": f"{CAM_PARITY_RELATIVE:g} x max|cam| on the test split",
                    "max_relative_to_image_range": cam_rel,
                    "relative_tolerance_per_image": CAM_PER_IMAGE_RELATIVE,
                },
            },
            "stored_samples": min(PARITY_SAMPLES, len(x_te)),
        },
        "files": {
            "card": "card.md",
            "roc": "roc.png",
            "calibration": "calibration.png",
            "cam_examples": "cam_examples.png",
        },
        "created_with": versions(),
    }
    manifest["onnx"]["sha256"] = sha256_file(onnx_path)
    plot_roc(y_te, p_test, out / "roc.png", "chest-xray: ROC (test split)")
    plot_calibration(y_te, p_test, out / "calibration.png", "chest-xray: calibration (test)")
    _plot_cams(x_te, y_te, p_test, k_cam, out / "cam_examples.png")

    data_text = (
        (
            "No real radiographs are available offline, so the default model is trained on SYNTHETIC images "
            "generated in code: a bright thorax ellipse on dark air, two dark lung fields, heart and spine "
            "shadows, curved ribs, random pose, exposure, gamma and noise. Half the images are "
            '"pneumonia": one to three patchy, textured opacities inside the lungs, from subtle to '
            "dense; some normal images carry small focal densities as confounders. The metrics below "
            "measure only how well the network separates these drawings; they say nothing about real "
            "chest X-rays. Every API response of this model carries a warning saying so. To train on "
            "real data run `build(out_root, npz=Path('pneumoniamnist_128.npz'))` with a MedMNIST file."
        )
        if synthetic
        else f"Trained on the MedMNIST-format file `{Path(npz).name}` with its own splits."  # type: ignore[arg-type]
    )
    training = (
        f"Keras CNN: per-image standardisation -> [Conv3x3(16)-BN-pool] -> [Conv3x3(32)-BN-pool] -> "
        f"[Conv3x3(64)-BN-pool] -> Conv3x3(64)-BN (16x16x64) -> SpatialDropout(0.1, training only) -> "
        f"Dense(2) per location -> global average pooling -> softmax; Adam {LEARNING_RATE:g}, batch 32, "
        f"cross-entropy, at most {QUICK_EPOCHS if quick else EPOCHS} epochs, early stopping on validation "
        f"loss from epoch {PATIENCE_FROM_EPOCH} (patience 3, best weights restored; {epochs_run} epochs run). "
        "Temperature "
        f"scaling (T = {temperature:.3f}, fitted on the validation split) is a fixed layer inside the graph."
    )
    card = render_card(
        manifest,
        extra_sections={
            "Data": data_text,
            "Training": training,
            "Input and preprocessing": (
                f"Accepted: PNG (8/16-bit, colour converted to grey), JPEG, DICOM of modality "
                f"{' or '.join(MODALITIES)} (single frame, uncompressed, RLE or JPEG 2000), at least "
                f"{MIN_SIZE}x{MIN_SIZE} pixels. Normalisation: {NORMALIZATION}."
            ),
            "Explanation (class activation map)": (
                "The ONNX graph returns `cam` [N, 16, 16] next to `probabilities` from the same pass: the "
                "per-location difference of the dense head's pneumonia and normal scores. Its grid mean is "
                f"the model's log-odds (max deviation on the test split {cam_identity:.2e}). The API shows "
                "its positive part (evidence for pneumonia) as a greyscale PNG. A CAM shows where the "
                "network's evidence lies at 16x16 resolution; it is not a segmentation and has not been "
                "validated against annotations. See `cam_examples.png`. Export parity of `cam`: max abs "
                f"difference {parity_cam['max_abs_diff']:.2e} (tolerance {cam_tol:.2e} = {CAM_PARITY_RELATIVE:g} x "
                f"max|cam|); worst image {cam_rel:.1e} of its own CAM range (limit {CAM_PER_IMAGE_RELATIVE:g})."
            ),
            "Limitations": (
                (
                    "- SYNTHETIC training and test data: the metrics describe a toy problem only.\n"
                    if synthetic
                    else "- Low-resolution (MedMNIST) single-centre paediatric data.\n"
                )
                + "- 128x128 input: fine detail (small nodules, lines, tubes) is lost; the image is squeezed "
                "to a square.\n"
                "- One frontal view only; no lateral views, no prior studies, no clinical context.\n"
                "- Threshold and temperature were fitted on the validation split only."
            ),
        },
    )
    k = min(PARITY_SAMPLES, len(x_te))
    parity_arrays = {"in:image": x_te[:k], "out:probabilities": k_probs[:k], "out:cam": k_cam[:k]}
    return write_model_folder(out, manifest, card, parity_arrays)


def _onnx_outputs(onnx_path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs, cam = sess.run(["probabilities", "cam"], {"image": x})
    return np.asarray(probs), np.asarray(cam)


def _plot_cams(x: np.ndarray, y: np.ndarray, p: np.ndarray, cam: np.ndarray, path: Path) -> None:
    """Four test images (two per class) with their positive CAM overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    picks = [int(i) for c in (0, 1) for i in np.flatnonzero(y == c)[:2]]
    fig, axes = plt.subplots(1, len(picks), figsize=(2.4 * len(picks), 2.7))
    for ax, i in zip(np.atleast_1d(axes), picks, strict=False):
        pos = np.maximum(cam[i], 0)
        pos = pos / pos.max() if pos.max() > 0 else pos
        small = Image.fromarray(pos.astype(np.float32), mode="F")
        big = np.asarray(small.resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        ax.imshow(x[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
        ax.imshow(big, cmap="inferno", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{LABELS[y[i]]}\np(pneumonia)={p[i]:.2f}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
