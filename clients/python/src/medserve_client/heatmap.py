"""``--heatmap out.png``: the API's CAM (8-bit greyscale PNG) drawn in red over the input image."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from medserve_client.errors import MedServeError

OPACITY = 0.6
"""How strongly the heatmap's maximum covers the image."""


def _greyscale(raw: bytes, media: str) -> Any:
    """The input as a Pillow ``L`` image (PNG, JPEG; DICOM through pydicom when installed)."""
    from PIL import Image

    if media != "application/dicom":
        return Image.open(io.BytesIO(raw)).convert("L")
    import numpy as np
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(raw), force=True)
    pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    while pixels.ndim > 2:  # frames or samples: the first frame, the mean of the samples
        pixels = pixels[0] if pixels.shape[0] < pixels.shape[-1] else pixels.mean(axis=-1)
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 1.0 - scaled
    return Image.fromarray((scaled * 255).round().astype(np.uint8), mode="L")


def save_overlay(answer: dict[str, Any], raw: bytes, media: str, out: Path) -> Path:
    """Write the overlay of ``answer["heatmap"]`` on the input image to ``out`` (PNG); return ``out``."""
    heat_doc = answer.get("heatmap")
    if not isinstance(heat_doc, dict) or not heat_doc.get("png"):
        raise MedServeError("the answer holds no heatmap", hint="this model may not produce one")
    try:
        from PIL import Image
    except ImportError as exc:
        raise MedServeError("--heatmap needs Pillow", hint="pip install 'medserve-client[images]'") from exc
    heat = Image.open(io.BytesIO(base64.b64decode(heat_doc["png"]))).convert("L")
    try:
        base = _greyscale(raw, media).resize(heat.size, Image.Resampling.BILINEAR)
    except ImportError as exc:
        raise MedServeError(
            "drawing on a DICOM image needs pydicom and numpy", hint="pip install 'medserve-client[images]'"
        ) from exc
    red = Image.new("RGB", heat.size, (255, 0, 0))
    mask = heat.point(lambda v: int(v * OPACITY))
    overlay = Image.composite(red, base.convert("RGB"), mask)
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay.save(out, format="PNG")
    return out
