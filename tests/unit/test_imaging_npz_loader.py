"""model_export.chest_xray data: the MedMNIST .npz loader and the synthetic generator (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_export.chest_xray import SIZE, load_npz, synthetic_radiographs


def write_medmnist(
    path: Path,
    *,
    size: int = 28,
    n: int = 6,
    channels: int | None = None,
    label_shape: str = "n1",
    labels: np.ndarray | None = None,
) -> Path:
    """A tiny PneumoniaMNIST-layout file: uint8 images, labels [N, 1]."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split in ("train", "val", "test"):
        shape = (n, size, size) if channels is None else (n, size, size, channels)
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        images[0] = 0
        images[1] = 255
        y = labels if labels is not None else np.array([0, 1] * (n // 2))
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = y.reshape(-1, 1) if label_shape == "n1" else y.reshape(-1)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("size", [28, 64, 128, 224])
def test_loader_resizes_to_model_input_in_unit_range(tmp_path: Path, size: int) -> None:
    data = load_npz(write_medmnist(tmp_path / "p.npz", size=size))
    assert set(data) == {"train", "val", "test"}
    for x, y in data.values():
        assert x.shape == (6, SIZE, SIZE, 1) and x.dtype == np.float32
        assert y.tolist() == [0, 1, 0, 1, 0, 1] and y.dtype == np.int64
        np.testing.assert_allclose(x[0], 0.0)
        np.testing.assert_allclose(x[1], 1.0, atol=1e-6)
        assert 0.0 <= x.min() and x.max() <= 1.0


def test_loader_accepts_flat_labels_and_channel_axes(tmp_path: Path) -> None:
    data = load_npz(write_medmnist(tmp_path / "a.npz", channels=1, label_shape="flat"))
    assert data["train"][0].shape == (6, SIZE, SIZE, 1)
    data = load_npz(write_medmnist(tmp_path / "b.npz", channels=3))
    np.testing.assert_allclose(data["val"][0][1], 1.0, atol=1e-5)


def test_loader_refuses_missing_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        load_npz(tmp_path / "bad.npz")


def test_loader_refuses_multilabel_or_non_binary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="binary"):
        load_npz(write_medmnist(tmp_path / "c.npz", labels=np.array([0, 1, 2, 0, 1, 2])))
    with pytest.raises(ValueError, match="both classes"):
        load_npz(write_medmnist(tmp_path / "d.npz", labels=np.zeros(6, dtype=int)))


def test_synthetic_set_is_balanced_deterministic_and_radiograph_like() -> None:
    x1, y1 = synthetic_radiographs(40, seed=5)
    x2, y2 = synthetic_radiographs(40, seed=5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (40, SIZE, SIZE) and x1.dtype == np.uint8
    assert y1.sum() == 20
    # air (corners) darker than the mediastinum (centre column), lungs darker than the spine
    corners = x1[:, :8, :8].mean()
    spine = x1[:, 40:90, 60:68].mean()
    lungs = np.concatenate([x1[:, 50:80, 25:40], x1[:, 50:80, 88:103]], axis=1).mean()
    assert corners < lungs < spine
    # pneumonia images are brighter inside the lung fields on average
    lung_mean = np.concatenate([x1[:, 40:90, 20:45], x1[:, 40:90, 83:108]], axis=1).mean(axis=(1, 2))
    assert lung_mean[y1 == 1].mean() > lung_mean[y1 == 0].mean()
