"""Shared test builders: images and DICOM files, API Gateway events, vitals observations, risk instances.

One place for what several test files build, so each test says only what differs.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import datetime
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset

from tests.conftest import live_folder

# --- images and DICOM ---------------------------------------------------------------------
PHI = {
    "PatientName": "Doe^Janet^Q",
    "PatientID": "PID-7741-XQ",
    "PatientBirthDate": "19610315",
    "AccessionNumber": "ACC-559201",
    "InstitutionName": "St Elsewhere General",
    "ReferringPhysicianName": "House^Gregory",
}


def phi_parts() -> list[str]:
    """Every identifying value and name component worth searching for (3+ characters)."""
    parts = {p for v in PHI.values() for p in v.split("^")} | set(PHI.values())
    return sorted(p for p in parts if len(p) >= 3)


SOP_CLASS = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1"}


def ramp(height: int = 96, width: int = 80, top: int = 255) -> np.ndarray:
    """Left-to-right intensity ramp from 0 to ``top`` (ints), the same on every row."""
    row = np.round(np.linspace(0, top, width)).astype(np.int64)
    return np.tile(row, (height, 1))


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_dicom(
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits: int = 16,
    pixels: np.ndarray | None = None,
    preamble: bool = True,
    raw_group: int = 8,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    frames: int = 1,
    transfer_syntax: str = uid.ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    with_pixels: bool = True,
    phi: bool = True,
) -> bytes:
    """A single- or multi-frame greyscale DICOM built in memory.

    ``preamble=False`` writes a raw dataset: starting with the file meta group
    (``raw_group=2``) or with group 0x0008 (``raw_group=8``, no file meta at all).
    """
    if pixels is None:
        pixels = ramp(top=2**bits - 1)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = uid.UID(SOP_CLASS.get(modality, "1.2.840.10008.5.1.4.1.1.7"))
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid.UID(transfer_syntax)
    ds.file_meta.ImplementationClassUID = uid.PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if phi:
        for key, value in PHI.items():
            setattr(ds, key, value)
    ds.StudyInstanceUID = uid.generate_uid()
    ds.SeriesInstanceUID = uid.generate_uid()
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if with_pixels:
        if pixel_data is not None:
            ds.PixelData = pixel_data
            ds["PixelData"].VR = "OB"
        else:
            dtype = np.uint8 if bits == 8 else np.uint16
            arr = np.asarray(pixels).astype(dtype)
            if frames > 1:
                arr = np.stack([arr] * frames)
            ds.PixelData = arr.tobytes()
            ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    buf = BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    elif raw_group == 2:
        ds.save_as(buf, enforce_file_format=False)
        data = buf.getvalue()
        assert data[:2] == b"\x02\x00"
        return data
    else:
        del ds.file_meta
        pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom's bundled {name} is missing"
    with open(str(path), "rb") as fh:
        return fh.read()


def png_with_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR claims ``width x height`` (a decompression bomb)."""
    data = bytearray(png_bytes(np.zeros((8, 8), dtype=np.uint8)))
    ihdr = 8  # length(4) type(4) data(13) crc(4)
    struct.pack_into(">II", data, ihdr + 8, width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    struct.pack_into(">I", data, ihdr + 8 + 13, crc)
    return bytes(data)


# --- API Gateway events -------------------------------------------------------------------
def raw_event(
    base: dict[str, Any], data: bytes, content_type: str, query: dict[str, str] | None = None, **headers: str
) -> dict:
    """``base`` re-filled with raw bytes (API Gateway's binary shape), a Content-Type, a query and headers."""
    ev = json.loads(json.dumps(base))
    ev["body"] = base64.b64encode(data).decode("ascii")
    ev["isBase64Encoded"] = True
    ev["queryStringParameters"] = query
    ev["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    for name, value in {"Content-Type": content_type, **{k.replace("_", "-"): v for k, v in headers.items()}}.items():
        ev["headers"][name] = value
        ev.setdefault("multiValueHeaders", {})[name] = [value]
    return ev


def json_event(base: dict[str, Any], body: Any, query: dict[str, str] | None = None, **headers: str) -> dict:
    """``base`` with a JSON (or raw string) body, a query and extra headers."""
    ev = json.loads(json.dumps(base))
    ev["body"] = body if isinstance(body, str) else json.dumps(body)
    ev["isBase64Encoded"] = False
    ev["queryStringParameters"] = query
    for name, value in {k.replace("_", "-"): v for k, v in headers.items()}.items():
        ev["headers"][name] = value
        ev.setdefault("multiValueHeaders", {})[name] = [value]
    return ev


# --- vitals and risk inputs -----------------------------------------------------------------
NORMAL_OBSERVATION: dict[str, Any] = {
    "heart_rate": 80,
    "respiratory_rate": 16,
    "spo2": 97,
    "temperature": 36.9,
    "systolic_bp": 125,
    "consciousness": "A",
    "supplemental_oxygen": False,
}


def observation(at: datetime | str | int = 8, /, **changes: Any) -> dict[str, Any]:
    """A normal observation at ``at`` (a datetime, an ISO string, or an hour of 2026-11-23 UTC)."""
    if isinstance(at, datetime):
        stamp = at.isoformat()
    elif isinstance(at, int):
        stamp = f"2026-11-23T{at:02d}:00:00Z"
    else:
        stamp = at
    return {"time": stamp, **NORMAL_OBSERVATION} | changes


def risk_instance(model_id: str) -> dict[str, Any]:
    """One valid instance of a risk model: each input at its training mean (or first allowed code)."""
    inputs = json.loads((live_folder(model_id) / "manifest.json").read_text())["inputs"]
    return {i["name"]: (sorted(i["allowed"])[0] if i.get("allowed") else i["train_mean"]) for i in inputs}
