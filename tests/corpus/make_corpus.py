"""Regenerate the hostile corpus: ``python -m tests.corpus.make_corpus`` (from the repository root).

Every file is made here, in code, from the hostile inputs found in issue 9 (and a few
classics); each one must be refused with a 4xx problem by the API and get exactly one
outcome in batch, with no 5xx and nothing echoed (:data:`MARKER` is planted where a
value could be echoed). The files are committed so the corpus is read, not rebuilt, by
``tests/unit/test_corpus.py``.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.encaps import encapsulate

from tests.builders import make_dicom, ramp
from tests.unit.test_hostile_input import MARKER, bad_voi_sequence, j2k_declaring, replace_value, resave

HERE = Path(__file__).resolve().parent


def _small(top: int = 4095) -> np.ndarray:
    return ramp(height=64, width=64, top=top)


def dicoms() -> dict[str, bytes]:
    base = make_dicom(pixels=_small(), bits=12, window=(2345, 5678))
    return {
        "window-width-zero.dcm": make_dicom(pixels=_small(), bits=12, window=(2000, 0)),
        "window-width-negative.dcm": make_dicom(pixels=_small(), bits=12, window=(2000, -40)),
        "window-width-text.dcm": replace_value(base, b"5678", b"abcd"),
        "window-width-nan.dcm": replace_value(base, b"5678", b"nan "),
        "window-centre-text.dcm": replace_value(base, b"2345", b"x2y5"),
        "rescale-slope-text.dcm": replace_value(
            make_dicom(pixels=_small(), bits=12, rescale=(7.25, 3)), b"7.25", b"a.bc"
        ),
        "voi-function-bogus.dcm": resave(
            make_dicom(pixels=_small(), bits=12, window=(2000, 400)), VOILUTFunction="BOGUS"
        ),
        "voi-sequence-malformed.dcm": bad_voi_sequence(),
        "modality-patient-name.dcm": resave(make_dicom(pixels=_small()), Modality=MARKER),
        "modality-ct.dcm": make_dicom(modality="CT", pixels=_small()),
        "j2k-declares-8900.dcm": make_dicom(
            pixels=np.zeros((64, 64), dtype=np.uint8),
            bits=8,
            transfer_syntax=uid.JPEG2000Lossless,
            pixel_data=encapsulate([j2k_declaring(8900, 8900)]),
        ),
        "rows-8900.dcm": resave(make_dicom(pixels=_small()), Rows=8900, Columns=8900),
        "multi-frame.dcm": make_dicom(pixels=_small(), frames=2),
        "no-pixel-data.dcm": make_dicom(pixels=_small(), with_pixels=False),
        "truncated.dcm": make_dicom(pixels=_small())[:-3000],
        "preamble-only.dcm": b"\x00" * 128 + b"DICM",
    }


def _png_claiming(width: int, height: int) -> bytes:
    buf = BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def images() -> dict[str, bytes]:
    buf = BytesIO()
    Image.fromarray(_small(255).astype(np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    jbuf = BytesIO()
    Image.fromarray(_small(255).astype(np.uint8)).save(jbuf, format="JPEG")
    return {
        "png-bomb-9000.png": _png_claiming(9000, 9000),
        "png-truncated.png": png[: len(png) // 2],
        "png-tiny-8x8.png": _png_claiming(8, 8),
        "jpeg-truncated.jpg": jbuf.getvalue()[:200],
        "gif.gif": b"GIF89a" + b"\x00" * 64,
        "text.png": MARKER.encode() * 10,
    }


def jsons() -> dict[str, str]:
    huge = "9" * 5000
    return {
        "huge-integer.json": f'{{"instances": [{{"mean_radius": {huge}}}], "observations": [], "image": {huge}}}',
        "duplicate-keys.json": '{"instances": [{"mean_radius": 1, "mean_radius": 2}], "instances": []}',
        "unknown-key-marker.json": json.dumps({"instances": [{MARKER: 1}], "observations": [{MARKER: 1}], MARKER: 1}),
        "bom-then-garbage.json": "\ufeff{" + MARKER,
        "deep-nesting.json": "[" * 5000 + "]" * 5000,
        "nan-literals.json": '{"instances": [{"mean_radius": NaN}], "observations": [{"heart_rate": Infinity}]}',
        "image-not-base64.json": json.dumps({"image": MARKER}),
        "image-base64-of-marker.json": json.dumps({"image": base64.b64encode(MARKER.encode() * 20).decode()}),
        "lone-surrogate.json": '{"instances": [{"\\ud800": 1}], "image": "\\udfff"}',
    }


def main() -> None:
    for folder, files in (("dicom", dicoms()), ("images", images())):
        (HERE / folder).mkdir(exist_ok=True)
        for name, data in files.items():
            (HERE / folder / name).write_bytes(data)
    (HERE / "json").mkdir(exist_ok=True)
    for name, text in jsons().items():
        (HERE / "json" / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
