"""``vitals-deterioration`` 2.0.0: a small Transformer encoder over the observation sequence.

Same synthetic cohort, split, input contract (``observations [N, T, 8]`` raw units +
``mask [N, T]``), in-graph standardisation, Platt calibration on the validation split,
Youden threshold, tf2onnx export (opset 17) and parity gate as the GRU 1.0.0
(:func:`model_export.vitals.build` does all of that); only the network differs:

``Normalization -> Dense(32) + sinusoidal positional encoding (observation index) ->
1 encoder block [2-head self-attention, key-masked so padding is never attended;
residual + LayerNorm; feed-forward 64 relu -> 32; residual + LayerNorm] ->
masked mean pooling over real observations ++ the last real observation's state ->
Dense(16, relu) -> Dense(1) logit -> Platt sigmoid``.

The time between observations is an input column (``dt_hours``), so the irregular
sampling is seen by the attention as well as the order given by the positional encoding.
About 15 k parameters; trains in a minute or two on two CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_export import vitals

D_MODEL = 32
HEADS = 2
FF_UNITS = 64
DROPOUT = 0.1

__all__ = ["TRANSFORMER", "build"]


def _layers() -> dict[str, Any]:
    """Keras layers with in-graph positional encoding and masked pooling (built lazily: TensorFlow)."""
    import keras

    class PositionalEncoding(keras.layers.Layer):
        """Add the sinusoidal encoding of the observation index (Vaswani et al. 2017) to ``[N, T, D]``."""

        def call(self, h: Any) -> Any:
            ops = keras.ops
            d = h.shape[-1]
            pos = ops.cast(ops.arange(ops.shape(h)[1]), "float32")[:, None]
            inv = ops.exp(ops.arange(0, d, 2, dtype="float32") * (-np.log(10000.0) / d))[None, :]
            angle = pos * inv
            return h + ops.concatenate([ops.sin(angle), ops.cos(angle)], axis=-1)[None, :, :]

    class KeyMask(keras.layers.Layer):
        """``mask [N, T]`` -> boolean attention mask ``[N, T, T]``: every query attends to real keys only."""

        def call(self, m: Any) -> Any:
            ops = keras.ops
            real = ops.greater(m, 0.5)
            return ops.logical_and(ops.ones_like(real)[:, :, None], real[:, None, :])

    class MaskedPool(keras.layers.Layer):
        """Mean of the real observations' states, concatenated with the last real observation's state."""

        def call(self, h: Any, m: Any) -> Any:
            ops = keras.ops
            w = m[:, :, None]
            mean = ops.sum(h * w, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)
            after = ops.concatenate([m[:, 1:], ops.zeros_like(m[:, :1])], axis=1)
            last = (m * (1.0 - after))[:, :, None]  # one-hot at the last real (right-padded) position
            return ops.concatenate([mean, ops.sum(h * last, axis=1)], axis=-1)

    return {"PositionalEncoding": PositionalEncoding, "KeyMask": KeyMask, "MaskedPool": MaskedPool}


def _build_keras(train_x: np.ndarray, train_m: np.ndarray) -> tuple[Any, Any, Any]:
    """Return ``(logit_model, calibrator_layer, prob_model)`` sharing weights."""
    import keras

    parts = _layers()
    n_f = len(vitals.feat.COLUMNS)
    x_in = keras.Input((None, n_f), name="observations")
    m_in = keras.Input((None,), name="mask")
    norm = keras.layers.Normalization(axis=-1, name="standardize")
    norm.adapt(train_x[train_m > 0.5])  # statistics of real (unpadded) observations only
    h = keras.layers.Dense(D_MODEL, name="embed")(norm(x_in))
    h = parts["PositionalEncoding"](name="position")(h)
    att_mask = parts["KeyMask"](name="key_mask")(m_in)
    a = keras.layers.MultiHeadAttention(HEADS, D_MODEL // HEADS, name="self_attention")(h, h, attention_mask=att_mask)
    h = keras.layers.LayerNormalization(name="norm_1")(h + keras.layers.Dropout(DROPOUT, name="drop_1")(a))
    f = keras.layers.Dense(FF_UNITS, activation="relu", name="ff_1")(h)
    f = keras.layers.Dense(D_MODEL, name="ff_2")(f)
    h = keras.layers.LayerNormalization(name="norm_2")(h + keras.layers.Dropout(DROPOUT, name="drop_2")(f))
    pooled = parts["MaskedPool"](name="pool")(h, m_in)
    h = keras.layers.Dense(16, activation="relu", name="hidden")(pooled)
    z = keras.layers.Dense(1, name="logit")(h)
    calib = keras.layers.Dense(1, activation="sigmoid", name="platt", trainable=False)
    return keras.Model([x_in, m_in], z), calib, keras.Model([x_in, m_in], calib(z))


TRANSFORMER = vitals.Variant(
    version="2.0.0",
    created="2026-11-30",
    name="Transformer encoder",
    architecture=(
        f"Normalization -> Dense({D_MODEL}) + sinusoidal positional encoding -> encoder block "
        f"[{HEADS}-head self-attention (key-masked) + residual + LayerNorm; FF {FF_UNITS} relu -> {D_MODEL} "
        f"+ residual + LayerNorm; dropout {DROPOUT}] -> masked mean pooling ++ last real observation -> "
        "Dense(16, relu) -> Dense(1) -> Platt sigmoid"
    ),
    make=_build_keras,
    learning_rate=1e-3,
    epochs=40,
    quick_epochs=3,
    change_note=(
        "Candidate to replace the GRU 1.0.0: the recurrent layer is replaced by a Transformer encoder block "
        "(masked self-attention, positional encoding, masked pooling); cohort, split, inputs, calibration "
        "method and threshold rule are unchanged. It serves only when the change-control gate (`make promote`, "
        "plan `../change_control.json`, declared before training) passes; `comparison.md` beside this card "
        "holds the verdict."
    ),
)
"""2.0.0: the Transformer encoder."""


def build(out_root: Path, *, quick: bool = False, csv: Path | None = None, **_: Any) -> Path:
    """Build ``<out_root>/vitals-deterioration/2.0.0/`` (see :func:`model_export.vitals.build`)."""
    return vitals.build(out_root, quick=quick, csv=csv, variant=TRANSFORMER)


if __name__ == "__main__":  # pragma: no cover
    import logging

    logging.basicConfig(level=logging.INFO)
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("layers/models"), quick="--quick" in sys.argv))
