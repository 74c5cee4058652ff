"""Determinism and data splits: the one seed, :func:`set_seeds` and :func:`stratified_split`."""

from __future__ import annotations

import os
import random

import numpy as np

SEED: int = 20261123
"""The one seed of the pipeline (splits, weight init, bootstrap)."""

__all__ = ["SEED", "set_seeds", "stratified_split"]


def set_seeds(seed: int = SEED) -> None:
    """Seed Python, NumPy and Keras/TensorFlow, and ask TF for deterministic ops.

    Also clears Keras' global state (``keras.backend.clear_session``), so automatic
    layer names, and with them the ONNX bytes and sha256, do not depend on which
    models were built earlier in the same process.

    Parameters
    ----------
    seed
        The seed; defaults to :data:`SEED`.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        import keras
        import tensorflow as tf
    except ImportError:  # metrics-only use without TensorFlow
        return
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF / already initialised
        pass


def stratified_split(
    y: np.ndarray, *, fractions: tuple[float, float, float] = (0.64, 0.16, 0.20), seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split row indices into train/validation/test, stratified on ``y`` when it is discrete.

    Parameters
    ----------
    y
        Labels (stratified) or a continuous target (then stratified on its quintiles).
    fractions
        Train, validation and test fractions; must sum to 1.
    seed
        Random seed.

    Returns
    -------
    tuple of numpy.ndarray
        Sorted, disjoint index arrays ``(train, validation, test)``.
    """
    from sklearn.model_selection import train_test_split

    if not np.isclose(sum(fractions), 1.0):
        raise ValueError("fractions must sum to 1")
    y = np.asarray(y)
    strata = y
    if np.issubdtype(y.dtype, np.floating) and len(np.unique(y)) > 20:
        strata = np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
    idx = np.arange(len(y))
    train_val, test = train_test_split(idx, test_size=fractions[2], stratify=strata, random_state=seed)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    train, val = train_test_split(train_val, test_size=val_share, stratify=strata[train_val], random_state=seed + 1)
    return np.sort(train), np.sort(val), np.sort(test)
