"""medserve.tasks.imaging.decode: PNG, JPEG and DICOM in, greyscale [0, 1] out, or a clear 4xx.

The helpers at the top (``png_bytes``, ``jpeg_bytes``, ``make_dicom``) are reused by
the other imaging tests. Every DICOM here is generated in the test (pydicom Dataset +
FileMetaDataset), except pydicom's bundled CT/MR samples.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

from medserve.problems import Problem
from medserve.tasks.imaging.decode import ImageSpec, decode_image, sniff, to_model_input

SPEC = ImageSpec()
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


# --- builders (shared with the other imaging tests) ---------------------------------------
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


def problem(data: bytes, spec: ImageSpec = SPEC, field: str = "image") -> Problem:
    with pytest.raises(Problem) as info:
        decode_image(data, spec=spec, field=field)
    return info.value


def messages(p: Problem) -> str:
    return " ".join(e["message"] for e in p.errors) + " " + p.detail


def bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom's bundled {name} is missing"
    with open(str(path), "rb") as fh:
        return fh.read()


def _png_with_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose IHDR claims ``width x height`` (a decompression bomb)."""
    data = bytearray(png_bytes(np.zeros((8, 8), dtype=np.uint8)))
    ihdr = 8  # length(4) type(4) data(13) crc(4)
    struct.pack_into(">II", data, ihdr + 8, width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    struct.pack_into(">I", data, ihdr + 8 + 13, crc)
    return bytes(data)


# --- sniffing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_bytes(np.zeros((4, 4), dtype=np.uint8)), "png"),
        (jpeg_bytes(np.zeros((8, 8), dtype=np.uint8)), "jpeg"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00", "dicom"),
        (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", "dicom"),
        (b"GIF89a" + b"\x00" * 20, None),
        (b"%PDF-1.7 hello", None),
        (b'{"image": 1}', None),
    ],
)
def test_format_is_read_from_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


@pytest.mark.parametrize("data", [b"GIF89a" + bytes(200), b"not an image at all", bytes(range(256)) * 4])
def test_unknown_bytes_are_415_naming_the_field(data: bytes) -> None:
    p = problem(data, field="body")
    assert p.status == 415
    assert p.errors[0]["field"] == "body"


def test_empty_bytes_are_422() -> None:
    assert problem(b"").status == 422


# --- PNG / JPEG --------------------------------------------------------------------------
def test_grey_png_is_scaled_to_unit_range_and_keeps_geometry() -> None:
    arr = ramp(96, 80).astype(np.uint8)
    img = decode_image(png_bytes(arr), spec=SPEC)
    assert (img.format, img.width, img.height, img.modality) == ("png", 80, 96, None)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (96, 80)
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-6)
    assert img.warnings == ()


def test_sixteen_bit_png_keeps_its_precision() -> None:
    arr = ramp(70, 90, top=65535).astype(np.uint16)
    arr[0, 0] = 1  # a value that 8 bits cannot represent
    img = decode_image(png_bytes(arr), spec=SPEC)
    np.testing.assert_allclose(img.pixels, arr / 65535.0, atol=1e-6)
    assert img.pixels[0, 0] > 0


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_colour_and_palette_pngs_become_grey(mode: str) -> None:
    rgb = np.zeros((80, 80, 3), dtype=np.uint8)
    rgb[:, 40:, 0] = 255  # right half pure red
    im = Image.fromarray(rgb).convert(mode)
    buf = BytesIO()
    im.save(buf, format="PNG")
    img = decode_image(buf.getvalue(), spec=SPEC)
    assert img.pixels.shape == (80, 80)
    assert img.pixels[:, :40].max() == 0.0
    np.testing.assert_allclose(img.pixels[:, 40:], 76 / 255.0, atol=2 / 255)  # ITU-R 601-2 luma of red
    assert any("greyscale" in w for w in img.warnings)


def test_grey_image_saved_as_rgb_gets_no_colour_warning() -> None:
    grey = ramp(80, 80).astype(np.uint8)
    img = decode_image(png_bytes(np.stack([grey] * 3, axis=-1)), spec=SPEC)
    np.testing.assert_allclose(img.pixels, grey / 255.0, atol=1 / 255)
    assert not any("greyscale" in w for w in img.warnings)


@pytest.mark.parametrize("colour", [False, True])
def test_jpeg_grey_and_colour(colour: bool) -> None:
    arr = ramp(120, 100).astype(np.uint8)
    data = jpeg_bytes(np.stack([arr] * 3, axis=-1) if colour else arr)
    img = decode_image(data, spec=SPEC)
    assert (img.format, img.width, img.height) == ("jpeg", 100, 120)
    # JPEG is lossy (and may be DCT-downscaled); the ramp must survive
    x = to_model_input(img.pixels, SPEC)[0, :, :, 0]
    assert x[:, :10].mean() < 0.1 < 0.9 < x[:, -10:].mean()


def test_large_jpeg_is_decoded_at_reduced_scale_but_reports_original_size() -> None:
    arr = ramp(1200, 1000).astype(np.uint8)
    img = decode_image(jpeg_bytes(arr), spec=SPEC)
    assert (img.width, img.height) == (1000, 1200)
    assert img.pixels.shape[0] < 1200  # draft mode: never decodes more than ~2x the model input


@pytest.mark.parametrize(("w", "h"), [(63, 200), (200, 63), (10, 10)])
def test_images_below_minimum_resolution_are_422(w: int, h: int) -> None:
    p = problem(png_bytes(np.zeros((h, w), dtype=np.uint8)))
    assert p.status == 422
    assert "64x64" in messages(p)
    assert p.errors[0]["field"] == "image"


@pytest.mark.parametrize(("w", "h"), [(7000, 7000), (20000, 20000)])
def test_decompression_bombs_are_413_before_decoding(w: int, h: int) -> None:
    # 49 MP trips Pillow's warning (made an error), 400 MP its hard error
    p = problem(_png_with_size(w, h))
    assert p.status == 413


def test_truncated_png_is_422() -> None:
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8))
    p = problem(data[: len(data) // 2])
    assert p.status == 422
    assert "truncated or corrupt" in messages(p)


def test_model_input_is_resized_whole_image() -> None:
    arr = ramp(300, 200).astype(np.uint8)
    x = to_model_input(decode_image(png_bytes(arr), spec=SPEC).pixels, SPEC)
    assert x.shape == (1, 128, 128, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[0, :, 0, 0], x[0, 0, 0, 0])  # rows identical: a horizontal ramp
    assert np.all(np.diff(x[0, 0, :, 0]) > 0)


# --- DICOM: accepted -----------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["DX", "CR"])
@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("preamble", [True, False])
def test_monochrome2_dicom_of_any_bit_depth(modality: str, bits: int, preamble: bool) -> None:
    img = decode_image(make_dicom(modality=modality, bits=bits, preamble=preamble), spec=SPEC)
    assert (img.format, img.modality, img.width, img.height) == ("dicom", modality, 80, 96)
    row = img.pixels[0]
    assert row[0] == 0.0 and row[-1] == 1.0 and np.all(np.diff(row) >= 0)


def test_raw_dicom_starting_with_file_meta_group() -> None:
    img = decode_image(make_dicom(preamble=False, raw_group=2), spec=SPEC)
    assert img.pixels[0, -1] == 1.0


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_monochrome1_is_inverted(bits: int) -> None:
    img = decode_image(make_dicom(photometric="MONOCHROME1", bits=bits), spec=SPEC)
    row = img.pixels[0]
    assert row[0] == 1.0 and row[-1] == 0.0  # low stored value = white in MONOCHROME1


def test_rescale_slope_and_intercept_are_applied() -> None:
    # slope -1 turns the ramp around: proof the Modality LUT was applied
    img = decode_image(make_dicom(bits=12, rescale=(-1.0, 4095.0)), spec=SPEC)
    assert img.pixels[0, 0] == 1.0 and img.pixels[0, -1] == 0.0


def test_window_centre_and_width_are_applied() -> None:
    stored = ramp(96, 80, top=4095)
    img = decode_image(make_dicom(bits=12, pixels=stored, window=(2048.0, 1024.0)), spec=SPEC)
    row, values = img.pixels[0], stored[0]
    assert np.all(row[values <= 1535] == 0.0)
    assert np.all(row[values >= 2561] == 1.0)
    inside = (values > 1600) & (values < 2500)
    assert inside.any() and np.all((row[inside] > 0) & (row[inside] < 1))
    assert not any("no VOI" in w for w in img.warnings)


def test_window_after_rescale() -> None:
    # stored 0..4095, rescaled to -1024..3071 (CT-like units); window 0 +- 512 in rescaled units
    stored = ramp(96, 80, top=4095)
    img = decode_image(make_dicom(bits=12, pixels=stored, rescale=(1.0, -1024.0), window=(0.0, 1024.0)), spec=SPEC)
    row, units = img.pixels[0], stored[0] - 1024
    assert np.all(row[units <= -513] == 0.0) and np.all(row[units >= 513] == 1.0)


def test_dicom_without_window_warns_and_uses_full_range() -> None:
    img = decode_image(make_dicom(bits=12), spec=SPEC)
    assert any("no VOI LUT or window" in w for w in img.warnings)


def test_rle_lossless_dicom_decodes_like_uncompressed() -> None:
    plain = make_dicom(bits=16)
    ds = pydicom.dcmread(BytesIO(plain))
    ds.compress(uid.RLELossless)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    a = decode_image(plain, spec=SPEC).pixels
    b = decode_image(buf.getvalue(), spec=SPEC).pixels
    np.testing.assert_array_equal(a, b)


# --- DICOM: refused --------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "modality"), [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_bundled_ct_and_mr_are_refused_by_modality(name: str, modality: str) -> None:
    p = problem(bundled(name), field="body")
    assert p.status == 422
    assert p.errors[0]["field"] == "dicom.Modality"
    text = messages(p)
    assert modality not in text and "CR, DX" in text  # the value is the caller's: never repeated


def test_modality_outside_the_manifest_list_is_422() -> None:
    p = problem(make_dicom(modality="MG"))
    assert p.status == 422 and "MG" not in messages(p) and p.errors[0]["field"] == "dicom.Modality"
    only_cr = ImageSpec(modalities=("CR",))
    assert problem(make_dicom(modality="DX"), spec=only_cr).status == 422
    assert decode_image(make_dicom(modality="CR"), spec=only_cr).modality == "CR"


def test_multi_frame_is_refused_clearly() -> None:
    p = problem(make_dicom(frames=3))
    assert p.status == 422 and "multi-frame" in messages(p)


def test_no_pixel_data_is_422() -> None:
    p = problem(make_dicom(with_pixels=False))
    assert p.status == 422 and "no Pixel Data" in messages(p)


def test_file_cut_before_pixel_data_is_refused() -> None:
    data = make_dicom()
    cut = data.find(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data tag
    assert cut > 0
    p = problem(data[:cut])
    assert p.status == 422 and "no Pixel Data" in messages(p)


def test_bundled_ct_cut_before_pixel_data_is_refused() -> None:
    data = bundled("CT_small.dcm")
    assert problem(data[: data.find(b"\xe0\x7f\x10\x00")]).status == 422


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_file_cut_inside_pixel_data_is_422(keep: float) -> None:
    data = make_dicom()
    start = data.find(b"\xe0\x7f\x10\x00")
    cut = start + int((len(data) - start) * keep)
    p = problem(data[:cut])
    assert p.status == 422 and "cannot be decoded" in messages(p)


def test_header_garbage_after_preamble_is_422() -> None:
    data = b"\x00" * 128 + b"DICM" + bytes(range(256)) * 3
    assert problem(data).status == 422


@pytest.mark.parametrize(
    "ts",
    [uid.JPEGLSLossless, uid.HTJ2KLossless, uid.JPEGLosslessSV1],
)
def test_compressed_syntax_without_decoder_is_415(ts: str) -> None:
    data = make_dicom(transfer_syntax=ts, pixel_data=encapsulate([b"\xff\x4f" + b"\x00" * 64]))
    p = problem(data)
    assert p.status == 415
    assert "transfer syntax" in messages(p) and uid.UID(ts).name in messages(p)


def test_jpeg2000_with_undecodable_data_is_422() -> None:
    # A JPEG 2000 decoder IS installed (Pillow/OpenJPEG), so dummy data is corrupt data, not an
    # unsupported format: 422 naming the transfer syntax.
    data = make_dicom(transfer_syntax=uid.JPEG2000, pixel_data=encapsulate([b"\x00" * 64]))
    p = problem(data)
    assert p.status == 422
    assert "JPEG 2000" in messages(p) and "cannot be decoded" in messages(p)


def test_no_patient_data_in_decoded_image_or_problems() -> None:
    img = decode_image(make_dicom(), spec=SPEC)
    text = repr(img.__dict__ | {"pixels": None})
    bad = [problem(make_dicom(modality="CT")), problem(make_dicom(frames=2)), problem(make_dicom()[:400])]
    text += " ".join(repr(p.to_dict("r")) for p in bad)
    for part in phi_parts():
        assert part not in text


def test_bundled_file_is_what_we_think() -> None:
    # guard for the CT/MR tests above: they must fail on modality, not on something else
    ds: Any = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    assert ds.Modality == "CT" and "PixelData" in ds


# --- large images: area-reduced early, same model input, bounded memory --------------------
MB = 1024 * 1024


def radiograph_like(height: int, width: int, top: int = 4095, seed: int = 0) -> np.ndarray:
    """Smooth anatomy-like shading, rib-like stripes with sharp edges, and pixel noise (ints)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(-1.0, 1.0, height)[:, None]
    x = np.linspace(-1.0, 1.0, width)[None, :]
    body = np.exp(-(x**2) / 0.5 - (y**2) / 0.8)
    ribs = (np.sin(y * 40.0 + 3.0 * x**2) > 0.6) * 0.15
    img = 0.1 + 0.7 * body + ribs
    img = img + rng.normal(0.0, 0.03, (height, width))
    return np.clip(np.round(img / img.max() * top), 0, top).astype(np.int64)


def with_voi_lut_sequence(data: bytes, gamma: float = 0.5) -> bytes:
    """The DICOM with a non-linear 12-bit VOI LUT table (and its window removed)."""
    ds = pydicom.dcmread(BytesIO(data))
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: entries, first value, bits
    item.add_new(0x00283006, "US", [round(65535 * (i / 4095) ** gamma) for i in range(4096)])  # LUT Data
    ds.VOILUTSequence = [item]
    for key in ("WindowCenter", "WindowWidth"):
        if key in ds:
            delattr(ds, key)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def full_resolution_reference(data: bytes, spec: ImageSpec = SPEC) -> np.ndarray:
    """The pre-reduction pipeline: LUTs on every pixel in float64, min-max, invert, Pillow resize."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(BytesIO(data))
    values = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = apply_voi_lut(values, ds, index=0)
    values = np.asarray(values, dtype=np.float64)
    lo, hi = values.min(), values.max()
    pixels = (values - lo) / (hi - lo)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        pixels = 1.0 - pixels
    im = Image.fromarray(pixels.astype(np.float32), mode="F")
    small = np.asarray(im.resize((spec.width, spec.height), Image.Resampling.BILINEAR, reducing_gap=3.0))
    return np.clip(small, 0.0, 1.0)[np.newaxis, :, :, np.newaxis]


def chest_xray_session() -> Any:
    import onnxruntime as ort

    from tests.conftest import MODELS

    path = next((MODELS / "chest-xray").glob("*/model.onnx"))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


LARGE_DICOMS: dict[str, dict[str, Any]] = {
    "DX window MONOCHROME1": dict(modality="DX", photometric="MONOCHROME1", window=(1800.0, 1600.0)),
    "CR rescale+window": dict(modality="CR", rescale=(0.5, -1024.0), window=(-200.0, 1400.0)),
    "DX no window": dict(modality="DX"),
    "CR VOI LUT table": dict(modality="CR", photometric="MONOCHROME1", voi_table=True),
}


@pytest.mark.parametrize(("rows", "cols"), [(2500, 2000), (2437, 2050)])
@pytest.mark.parametrize("case", sorted(LARGE_DICOMS))
def test_large_dicom_is_reduced_early_but_gives_the_full_resolution_model_input(
    case: str, rows: int, cols: int
) -> None:
    opts = dict(LARGE_DICOMS[case])
    voi_table = opts.pop("voi_table", False)
    data = make_dicom(bits=12, pixels=radiograph_like(rows, cols), **opts)
    if voi_table:
        data = with_voi_lut_sequence(data)
    img = decode_image(data, spec=SPEC)
    # kept small, but the original geometry (for the heatmap's aspect ratio) is reported
    assert (img.width, img.height) == (cols, rows)
    assert img.pixels.shape == (-(-rows // (rows // 384)), -(-cols // (cols // 384)))
    x, ref = to_model_input(img, SPEC), full_resolution_reference(data)
    assert x.shape == ref.shape == (1, 128, 128, 1)
    diff = np.abs(x - ref)
    assert float(diff.mean()) < 1e-6 and float(diff.max()) < 1e-5  # float32 rounding only
    session = chest_xray_session()
    p_new = session.run(["probabilities"], {"image": x})[0]
    p_ref = session.run(["probabilities"], {"image": ref.astype(np.float32)})[0]
    np.testing.assert_allclose(p_new, p_ref, atol=1e-5)


def test_large_grey_png_is_reduced_early_but_gives_the_full_resolution_model_input() -> None:
    arr = radiograph_like(1900, 2600, top=65535, seed=1).astype(np.uint16)
    img = decode_image(png_bytes(arr), spec=SPEC)
    assert (img.width, img.height) == (2600, 1900) and img.pixels.shape == (475, 434)
    im = Image.fromarray((arr / 65535.0).astype(np.float32), mode="F")
    ref = np.asarray(im.resize((128, 128), Image.Resampling.BILINEAR, reducing_gap=3.0))
    np.testing.assert_allclose(to_model_input(img, SPEC)[0, :, :, 0], np.clip(ref, 0, 1), atol=1e-5)


def test_small_images_are_not_reduced() -> None:
    arr = ramp(700, 760).astype(np.uint8)  # below 3x the model input on both sides
    img = decode_image(png_bytes(arr), spec=SPEC)
    assert img.pixels.shape == (700, 760) and img.box is None
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-6)


def traced_peak(fn: Any) -> int:
    """Peak bytes allocated (numpy and Python; tracemalloc sees both) while ``fn()`` runs."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_decoding_a_3000x3000_16_bit_dicom_stays_within_a_memory_bound() -> None:
    # pydicom's copy of the pixel bytes and its decoded uint16 array are 17 MiB each; the
    # full-resolution float64 pipeline added 69 MiB per temporary copy (206 MiB peak; now ~39).
    data = make_dicom(
        bits=16, pixels=radiograph_like(3000, 3000, top=65535), window=(30000.0, 50000.0), photometric="MONOCHROME1"
    )
    peak = traced_peak(lambda: decode_image(data, spec=SPEC))
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MiB"


def test_colour_check_of_a_large_png_copies_no_full_size_rgb() -> None:
    rgb = np.stack([ramp(3000, 3000).astype(np.uint8)] * 3, axis=-1)
    rgb[-1, -1] = (255, 0, 0)  # a single coloured pixel, in the last row: a subsample would miss it
    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    img: list[Any] = []
    peak = traced_peak(lambda: img.append(decode_image(data, spec=SPEC)))
    assert any("greyscale" in w for w in img[0].warnings)
    assert peak < 25 * MB, f"peak {peak / MB:.0f} MiB"  # was 77 MiB with a full RGB copy; now ~4


@pytest.mark.parametrize(("rows", "cols"), [(96, 80), (1300, 900)])
def test_rgb_dicom_becomes_luma_grey(rows: int, cols: int) -> None:
    rgb = np.zeros((rows, cols, 3), dtype=np.uint8)
    rgb[:, cols // 2 :, 0] = 255  # right half pure red, left half black
    ds = pydicom.dcmread(BytesIO(make_dicom(bits=8, pixels=np.zeros((rows, cols)))))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    img = decode_image(buf.getvalue(), spec=SPEC)
    assert (img.width, img.height) == (cols, rows)
    assert any("colour DICOM" in w for w in img.warnings)
    x = to_model_input(img, SPEC)[0, :, :, 0]
    assert x[:, :60].max() == 0.0 and np.allclose(x[:, 68:], 1.0, atol=1e-6)  # min-max of luma 0 and 76
