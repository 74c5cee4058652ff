"""Decode one radiograph (PNG, JPEG or DICOM) into a greyscale float image.

:func:`decode_image` is a pure function shared by the API and the batch function:
bytes in, :class:`DecodedImage` out, or a :class:`~medserve.problems.Problem`
(4xx) naming the field at fault. The format is read from the magic bytes, never
from a header or a file name.

- PNG / JPEG go through Pillow, restricted to the sniffed format, with a
  decompression-bomb limit (:data:`MAX_PIXELS`; Pillow's
  ``DecompressionBombWarning`` is turned into an error): too many pixels is
  **413**. Colour, palette and alpha images become greyscale (ITU-R 601-2 luma);
  16-bit greyscale PNGs keep their 16 bits.
- DICOM (with the 128-byte preamble + ``DICM``, or a raw dataset starting with
  group 0x0002/0x0008) goes through pydicom, imported **only** in that branch so
  PNG requests never pay for it. The Modality LUT (rescale slope/intercept or
  LUT) and the VOI LUT or first window centre/width are applied, MONOCHROME1 is
  inverted. Modalities outside the model's list, multi-frame objects, missing or
  truncated pixel data are **422**; a transfer syntax whose decoder is not
  installed is **415**; compressed data the decoder cannot read is **422**.
  No DICOM attribute other than the image geometry, modality, photometric
  interpretation and bit depth is ever copied out: patient identifiers never
  reach a response or a log line, and pydicom's own warnings (which may quote
  element values) are silenced.

Every decoded image is scaled to ``[0, 1]`` (0 = black as displayed). The model
standardises each image inside its graph, so only the displayed contrast matters.

Memory: a large image is never held as a full-resolution float array. The
display transform (DICOM LUTs and windowing, luma, bit-depth scaling) is applied
to strips of rows, and each strip is area-reduced at once (Pillow ``reduce``)
by the integer factor Pillow's own ``resize(..., reducing_gap=3.0)`` would use
to reach the model input. The result, and the model input built from it by
:func:`to_model_input`, equal the full-resolution pipeline up to float32
rounding: every LUT is applied to original pixels before averaging, and the
min-max bounds are taken over the full-resolution values.
"""

from __future__ import annotations

import logging
import math
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from medserve.problems import Problem, payload_too_large, unprocessable, unsupported_media_type

MAX_PIXELS = 40_000_000
"""Largest image accepted, in pixels (a 4,300 x 4,300 detector is 18.5 MP)."""
MAX_BYTES = 64 * 1024 * 1024
"""Largest encoded file accepted (API Gateway stops at 10 MB; this guards batch)."""

# Pillow's bomb check: a warning above the limit, an error above twice the limit.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def silence_pydicom() -> None:
    """Keep pydicom's ``logging`` output from ever reaching a handler.

    pydicom logs element values ("Invalid value for VR CS: '<value>'", bad UIDs from
    the file meta) through the ``pydicom`` logger, which propagates to the root logger.
    Its level is set above CRITICAL, it stops propagating and it is disabled, so no
    record of it (or of a ``pydicom.*`` child) is handled at any root level. Called at
    import, before pydicom itself is imported.
    """
    quiet = logging.getLogger("pydicom")
    quiet.setLevel(logging.CRITICAL + 1)
    quiet.propagate = False
    quiet.disabled = True


silence_pydicom()

REDUCING_GAP = 3.0
"""Images are area-reduced by whole factors to at least this many times the model input."""
_STRIP_PIXELS = 1 << 18
"""Pixels per strip of rows transformed at once (bounds the float temporaries)."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC = b"DICM"

_HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
_GREY_MODES = {"L"} | _HIGH_BIT_MODES
_UNCOMPRESSED_NAMES = {"png": "PNG", "jpeg": "JPEG", "dicom": "DICOM"}


@dataclass(frozen=True)
class ImageSpec:
    """What an imaging model accepts (the manifest's ``image`` block).

    Parameters
    ----------
    height, width
        The model's input size; every image is resized to it.
    min_height, min_width
        Smallest accepted original image (422 below).
    modalities
        Accepted DICOM modalities (e.g. ``("CR", "DX")``); PNG/JPEG carry none.
    max_pixels
        Largest accepted original image, in pixels (413 above).
    """

    height: int = 128
    width: int = 128
    min_height: int = 64
    min_width: int = 64
    modalities: tuple[str, ...] = ("CR", "DX")
    max_pixels: int = MAX_PIXELS

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ImageSpec:
        """Build the spec from a manifest's ``image`` block."""
        img = manifest.get("image", {})
        return cls(
            height=int(img.get("height", 128)),
            width=int(img.get("width", 128)),
            min_height=int(img.get("min_height", 64)),
            min_width=int(img.get("min_width", 64)),
            modalities=tuple(img.get("modalities", ("CR", "DX"))),
            max_pixels=int(img.get("max_pixels", MAX_PIXELS)),
        )


@dataclass(frozen=True)
class DecodedImage:
    """A decoded greyscale image and what was learnt about it (never patient data).

    Attributes
    ----------
    pixels
        ``float32`` array in ``[0, 1]``, 0 = black as displayed: the image area-reduced
        (see the module notes) to at least ``REDUCING_GAP`` times the model input, or
        at full resolution when it is smaller than that.
    format
        ``"png"``, ``"jpeg"`` or ``"dicom"`` (from the magic bytes).
    height, width
        Size of the original image in pixels (its aspect ratio, for the heatmap).
    modality
        DICOM Modality (``None`` for PNG/JPEG).
    warnings
        Human-readable notes about the conversion, safe to return to the caller.
    box
        The region of ``pixels`` the original image covers, ``(0, 0, w, h)`` in
        (fractional) reduced pixels, when a partial block was kept at the right or
        bottom edge; ``None`` when it is all of ``pixels``.
    """

    pixels: np.ndarray
    format: str
    height: int
    width: int
    modality: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    box: tuple[float, float, float, float] | None = None


def sniff(data: bytes) -> str | None:
    """The image format from the magic bytes: ``"png"``, ``"jpeg"``, ``"dicom"`` or ``None``.

    DICOM is recognised with its preamble (``DICM`` at offset 128) or as a raw
    dataset whose first tag is in group 0x0002 (file meta) or 0x0008 (identifying).
    """
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == DICOM_MAGIC:
        return "dicom"
    if len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00"):
        return "dicom"
    return None


def decode_image(data: bytes, *, spec: ImageSpec, field: str = "image") -> DecodedImage:
    """Decode PNG, JPEG or DICOM bytes into a greyscale ``[0, 1]`` image.

    Parameters
    ----------
    data
        The encoded file.
    spec
        What the model accepts (size limits, DICOM modalities).
    field
        The request field the bytes came from (``"image"`` for JSON, ``"body"``
        for raw uploads), named in every problem.

    Returns
    -------
    DecodedImage
        The image and conversion notes.

    Raises
    ------
    Problem
        413 too many pixels or bytes; 415 not PNG/JPEG/DICOM or no decoder for a
        DICOM transfer syntax; 422 unreadable, too small, wrong modality,
        multi-frame or no pixel data.
    """
    if not data:
        raise unprocessable([(field, "is empty; send a PNG, JPEG or DICOM file")])
    if len(data) > MAX_BYTES:
        raise payload_too_large(f"the image is larger than {MAX_BYTES // (1024 * 1024)} MiB", field=field)
    fmt = sniff(data)
    if fmt is None:
        raise unsupported_media_type(
            "the bytes are not a PNG, JPEG or DICOM file (format is read from the bytes)", field=field
        )
    if fmt == "dicom":
        image = _decode_dicom(data, spec, field)
    else:
        image = _decode_pillow(data, fmt, spec, field)
    return image


# --- PNG / JPEG ---------------------------------------------------------------------------
def _decode_pillow(data: bytes, fmt: str, spec: ImageSpec, field: str) -> DecodedImage:
    notes: list[str] = []
    name = _UNCOMPRESSED_NAMES[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(BytesIO(data), formats=[name])
            width, height = im.size
            _check_size(width, height, spec, field)
            if fmt == "jpeg" and im.mode in ("L", "RGB", "YCbCr", "CMYK"):
                # DCT-domain downscaling: never decodes more than ~2x the model's input.
                im.draft("L", (2 * spec.width, 2 * spec.height))
            im.load()
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientation turns it by 90 degrees
                width, height = height, width
            im = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise payload_too_large(
            f"the image has more than {spec.max_pixels:,} pixels (decompression-bomb limit)", field=field
        ) from exc
    except Problem:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = f"is a {name} file that cannot be decoded (truncated or corrupt)"
        raise unprocessable([(field, message)]) from exc
    mode = im.mode
    convert = mode not in _GREY_MODES
    if convert:
        if mode not in ("1", "LA") and _is_colour(im):
            notes.append("colour image converted to greyscale (ITU-R 601-2 luma)")
        if "A" in im.getbands() or "transparency" in im.info:
            notes.append("transparency ignored")
    top = 255.0 if convert or mode == "L" else (65535.0 if mode.startswith("I;16") else None)
    w, h = im.size  # the decoded size (JPEG draft mode may have shrunk it)

    def rows(y0: int, y1: int) -> np.ndarray:
        part = im.crop((0, y0, w, y1))
        values = np.asarray(part.convert("L") if convert else part)
        return values.astype(np.float32) / top if top is not None else values  # "I", "F": min-max

    pixels, box = _area_reduce(rows, w, h, spec, fixed_range=top is not None)
    return DecodedImage(pixels=pixels, format=fmt, height=height, width=width, warnings=tuple(notes), box=box)


def _is_colour(im: Image.Image) -> bool:
    """True when any pixel's channels differ; scans strips of rows, never a full-size RGB copy."""
    w, h = im.size
    step = max(1, _STRIP_PIXELS // max(1, w))
    for y0 in range(0, h, step):
        rgb = np.asarray(im.crop((0, y0, w, min(h, y0 + step))).convert("RGB"))
        if np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]):
            return True
    return False


def _check_size(width: int, height: int, spec: ImageSpec, field: str) -> None:
    if width * height > spec.max_pixels:
        raise payload_too_large(
            f"the image has {width * height:,} pixels; at most {spec.max_pixels:,} are accepted", field=field
        )
    if width < spec.min_width or height < spec.min_height:
        raise unprocessable(
            [
                (
                    field,
                    f"image is {width}x{height} pixels; at least {spec.min_width}x{spec.min_height} "
                    "(width x height) is required",
                )
            ]
        )


def _tabulated(arr: np.ndarray, display: Callable[[np.ndarray], np.ndarray]) -> Callable[[int, int], np.ndarray]:
    """``rows(y0, y1)`` of ``display(arr)``, through a lookup table when ``arr`` holds small integers.

    ``display`` is element-wise, so tabulating it once over the stored values present
    (at most 65,536 for 8/16-bit data) and indexing the table gives the same values
    as applying it to every pixel, far faster; other data get ``display`` per strip.
    """
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2 and arr.size:
        vmin, vmax = int(arr.min()), int(arr.max())
        table = np.asarray(display(np.arange(vmin, vmax + 1, dtype=arr.dtype)), dtype=np.float64)
        table = np.nan_to_num(table, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

        def rows(y0: int, y1: int) -> np.ndarray:
            return table[arr[y0:y1].astype(np.intp) - vmin]

        return rows
    return lambda y0, y1: display(arr[y0:y1])


def reduction_factors(width: int, height: int, spec: ImageSpec) -> tuple[int, int]:
    """Whole ``(x, y)`` area-reduction factors: those of Pillow's ``resize(reducing_gap=3.0)``."""
    return int(width / spec.width / REDUCING_GAP) or 1, int(height / spec.height / REDUCING_GAP) or 1


def _area_reduce(
    rows: Callable[[int, int], np.ndarray], width: int, height: int, spec: ImageSpec, *, fixed_range: bool
) -> tuple[np.ndarray, tuple[float, float, float, float] | None]:
    """Build the reduced ``[0, 1]`` image from display values made strip by strip.

    Parameters
    ----------
    rows
        ``rows(y0, y1)`` -> the display values of rows ``y0:y1`` at full resolution
        (any real dtype; non-finite values count as 0).
    width, height
        Full-resolution size.
    spec
        The model's input size, which sets the reduction factors.
    fixed_range
        ``True`` when ``rows`` already returns ``[0, 1]``; otherwise the result is
        min-max scaled with the bounds of the full-resolution values.

    Returns
    -------
    pixels, box
        The reduced ``float32`` image and the region of it the original covers
        (``None`` when the factors divide the size exactly).
    """
    fx, fy = reduction_factors(width, height, spec)
    out = np.empty((-(-height // fy), -(-width // fx)), dtype=np.float32)
    step = fy * max(1, _STRIP_PIXELS // (width * fy))
    lo, hi = np.inf, -np.inf
    for y0 in range(0, height, step):
        strip = np.asarray(rows(y0, min(height, y0 + step)))
        if not fixed_range:
            if strip.dtype.kind == "f":
                strip = np.nan_to_num(strip, copy=not strip.flags.writeable, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = min(lo, float(strip.min())), max(hi, float(strip.max()))
        part = np.ascontiguousarray(strip, dtype=np.float32)
        if fx > 1 or fy > 1:
            part = np.asarray(Image.fromarray(part).reduce((fx, fy)), dtype=np.float32)
        out[y0 // fy : y0 // fy + part.shape[0]] = part
    if not fixed_range:
        lo32, hi32 = np.float32(lo), np.float32(hi)
        if hi32 > lo32:
            out -= lo32
            out /= hi32 - lo32
            np.clip(out, 0.0, 1.0, out=out)
        else:
            out.fill(0.0)
    exact = width % fx == 0 and height % fy == 0
    return out, None if exact else (0.0, 0.0, width / fx, height / fy)


# --- DICOM --------------------------------------------------------------------------------
def _decode_dicom(data: bytes, spec: ImageSpec, field: str) -> DecodedImage:
    """DICOM branch; pydicom is imported here and only here."""
    with warnings.catch_warnings():
        # pydicom's warnings can quote element values (names, dates): never let them out.
        warnings.simplefilter("ignore")
        return _decode_dicom_quiet(data, spec, field)


def _decode_dicom_quiet(data: bytes, spec: ImageSpec, field: str) -> DecodedImage:
    import pydicom
    from pydicom import uid as dicom_uid
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder

    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
        modality = str(ds.get("Modality", "") or "").strip().upper()
        has_pixels = "PixelData" in ds
        frames_raw = ds.get("NumberOfFrames", 1)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    except Exception as exc:  # any parse failure is the caller's file, not our bug
        message = "is a DICOM file that cannot be parsed (truncated or malformed)"
        raise unprocessable([(field, message)]) from exc

    expected = ", ".join(spec.modalities)
    if not modality:
        raise unprocessable([("dicom.Modality", f"DICOM Modality (0008,0060) is missing; expected one of {expected}")])
    if modality not in spec.modalities:
        # The value is never repeated: it is the caller's (a Modality of "DOE^JANE" has been seen).
        message = f"this DICOM Modality is not accepted by this model; expected one of {expected}"
        raise unprocessable([("dicom.Modality", message)])
    if not has_pixels:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise unprocessable([(field, "float pixel data is not supported; send integer Pixel Data")])
        raise unprocessable([(field, "the DICOM object has no Pixel Data (7FE0,0010)")])
    try:
        frames = int(frames_raw or 1)
    except (TypeError, ValueError):
        frames = 1
    if frames > 1:
        raise unprocessable(
            [(field, f"multi-frame DICOM ({frames} frames) is not supported; send one single-frame image")]
        )
    if rows <= 0 or cols <= 0:
        raise unprocessable([(field, "DICOM Rows/Columns are missing or zero")])
    _check_size(cols, rows, spec, field)

    # Transfer syntax: from the file meta, or from how the raw dataset was encoded.
    tsuid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not tsuid:
        implicit, little = ds.original_encoding
        if implicit is None:
            implicit, little = True, True
        tsuid = (
            dicom_uid.ImplicitVRLittleEndian
            if implicit
            else (dicom_uid.ExplicitVRLittleEndian if little else dicom_uid.ExplicitVRBigEndian)
        )
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = tsuid
    tsuid = dicom_uid.UID(str(tsuid))
    ts_name = tsuid.name if tsuid.is_valid else "unknown"
    try:
        decoder = get_decoder(tsuid)
    except NotImplementedError as exc:
        raise unsupported_media_type(
            f"DICOM transfer syntax {ts_name} ({tsuid}) is not supported; send uncompressed "
            "(Explicit VR Little Endian) or RLE Lossless",
            field=field,
        ) from exc
    if not decoder.is_available:
        raise unsupported_media_type(
            f"DICOM transfer syntax {ts_name} ({tsuid}) needs a decoder that is not installed here; "
            "send uncompressed (Explicit VR Little Endian), RLE Lossless or JPEG 2000",
            field=field,
        )

    _check_codestream_size(ds, tsuid, rows, cols, spec, field)
    display_errors = _display_errors(ds)
    if display_errors:
        raise unprocessable(display_errors)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # corrupt or truncated pixel data
        what = "compressed " if tsuid.is_compressed else ""
        raise unprocessable(
            [(field, f"the {what}DICOM pixel data ({ts_name}) cannot be decoded (truncated or corrupt)")]
        ) from exc
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[-1] == 3):
        raise unprocessable([(field, f"DICOM pixel array has unsupported shape {list(arr.shape)}")])

    notes: list[str] = []
    height, width = arr.shape[:2]
    rows_of: Callable[[int, int], np.ndarray] | None
    if arr.ndim == 3:  # RGB (pydicom converted YBR already)
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        notes.append("colour DICOM converted to greyscale (ITU-R 601-2 luma)")

        def rows_of(y0: int, y1: int) -> np.ndarray:
            return arr[y0:y1].astype(np.float32) @ luma

    else:
        has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
        if not has_voi:
            notes.append("DICOM has no VOI LUT or window; full pixel range used")

        def display(values: np.ndarray) -> np.ndarray:
            # Element-wise transforms: applying them to strips or to a table is exact.
            values = apply_modality_lut(values, ds)
            return apply_voi_lut(values, ds, index=0) if has_voi else values

        rows_of = _tabulated_or_none(arr, display)

    try:
        if rows_of is None:  # the table could not be built: the same transform per strip says why
            rows_of = _tabulated(arr, display)
        pixels, box = _area_reduce(rows_of, width, height, spec, fixed_range=False)
    except Exception as exc:  # invalid LUT/window attributes
        raise unprocessable(
            [(field, "DICOM Modality LUT / VOI LUT (rescale or window) attributes are invalid")]
        ) from exc
    if arr.ndim == 2 and photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), pixels, out=pixels)
    return DecodedImage(
        pixels=pixels,
        format="dicom",
        height=rows,
        width=cols,
        modality=modality,
        warnings=tuple(notes),
        box=box,
    )


# --- DICOM checks made before any pixel is decoded -----------------------------------------
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def _tabulated_or_none(
    arr: np.ndarray, display: Callable[[np.ndarray], np.ndarray]
) -> Callable[[int, int], np.ndarray] | None:
    """:func:`_tabulated`, or ``None`` when the transform fails (the caller turns that into a 422)."""
    try:
        return _tabulated(arr, display)
    except Exception:
        return None


def _first_number(ds: Any, name: str) -> float | None:
    """The first value of a numeric element as a finite float; ``None`` when it is not one."""
    try:
        value = ds[name].value
        if isinstance(value, list | tuple) or (hasattr(value, "__getitem__") and not isinstance(value, str | bytes)):
            value = value[0]
        number = float(value)
    except Exception:
        return None
    return number if math.isfinite(number) else None


def _lut_is_valid(seq: Any) -> bool:
    """A LUT sequence whose first item has a 3-value descriptor and at least as much data as it declares."""
    try:
        item = seq[0]
        descriptor = [int(v) for v in item.LUTDescriptor]
        data = item.LUTData
        if len(descriptor) != 3 or not 1 <= descriptor[2] <= 16:
            return False
        entries = descriptor[0] or 65536
        count = len(data) // (2 if isinstance(data, bytes) and descriptor[2] > 8 else 1) if data is not None else 0
        return count >= entries
    except Exception:
        return False


def _display_errors(ds: Any) -> list[tuple[str, str]]:
    """``(dicom.<Keyword>, rule)`` for each Modality LUT / VOI LUT attribute the display transform cannot use.

    Mirrors what :func:`pydicom.pixels.apply_modality_lut` and ``apply_voi_lut`` read, so
    that a bad value is a 422 naming the element, never an exception in the transform.
    Values are never quoted (they are the caller's).
    """
    errors: list[tuple[str, str]] = []
    if "ModalityLUTSequence" in ds:
        if not _lut_is_valid(ds.ModalityLUTSequence):
            errors.append(("dicom.ModalityLUTSequence", "must hold a LUT Descriptor of 3 values and its LUT Data"))
    else:
        for name in ("RescaleSlope", "RescaleIntercept"):
            if name in ds and _first_number(ds, name) is None:
                errors.append((f"dicom.{name}", "must be a finite decimal number"))
    if "VOILUTSequence" in ds:
        if not _lut_is_valid(ds.VOILUTSequence):
            errors.append(("dicom.VOILUTSequence", "must hold a LUT Descriptor of 3 values and its LUT Data"))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        except Exception:
            function = ""
        if function not in _VOI_FUNCTIONS:
            errors.append(("dicom.VOILUTFunction", "must be one of " + ", ".join(_VOI_FUNCTIONS)))
        if _first_number(ds, "WindowCenter") is None:
            errors.append(("dicom.WindowCenter", "must be a finite decimal number"))
        width = _first_number(ds, "WindowWidth")
        if width is None or width <= 0 or (function == "LINEAR" and width < 1):
            errors.append(("dicom.WindowWidth", "must be a decimal number of at least 1 (above 0 for LINEAR_EXACT)"))
    return errors


def _declared_size(frame: bytes) -> tuple[int, int] | None:
    """``(width, height)`` a compressed frame declares in its own header (JPEG 2000 SIZ, JPEG SOF), if found."""
    if frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # J2K / HTJ2K codestream: SOC, SIZ
        xsiz, ysiz, xo, yo = struct.unpack(">IIII", frame[8:24])
        return xsiz - xo, ysiz - yo
    if frame[4:12] == b"jP  \r\n\x87\n":  # JP2 file format: the ihdr box
        at = frame.find(b"ihdr")
        if at >= 0 and len(frame) >= at + 12:
            height, width = struct.unpack(">II", frame[at + 4 : at + 12])
            return width, height
        return None
    if frame[:2] == b"\xff\xd8":  # JPEG: walk the markers to the first SOF
        at = 2
        while at + 9 <= len(frame) and frame[at] == 0xFF:
            marker = frame[at + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", frame[at + 5 : at + 9])
                return width, height
            at += 2 + struct.unpack(">H", frame[at + 2 : at + 4])[0]
    return None


def _check_codestream_size(ds: Any, tsuid: Any, rows: int, cols: int, spec: ImageSpec, field: str) -> None:
    """Refuse compressed pixel data whose own header declares too many pixels, or not Rows x Columns.

    A decoder allocates what the codestream declares, whatever Rows and Columns say (a
    521-byte file can declare 8,900 x 8,900), so the declared size is read before decoding.
    """
    if not tsuid.is_compressed or tsuid == "1.2.840.10008.1.2.5":  # RLE declares no size of its own
        return
    try:
        from pydicom.encaps import generate_fragments

        fragments = generate_fragments(ds.PixelData)
        next(fragments, None)  # the Basic Offset Table
        frame = next(fragments, b"")
        declared = _declared_size(bytes(frame[:65536]))
    except Exception:
        return  # unreadable encapsulation: the decoder refuses it (422)
    if declared is None:
        return
    width, height = declared
    if width * height > spec.max_pixels:
        raise payload_too_large(
            f"the compressed pixel data declares {width * height:,} pixels; at most {spec.max_pixels:,} are accepted",
            field="dicom.PixelData",
        )
    if (width, height) != (cols, rows):
        raise unprocessable([("dicom.PixelData", "the compressed image size does not match Rows and Columns")])


# --- model input --------------------------------------------------------------------------
def resize(
    pixels: np.ndarray, width: int, height: int, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Resize a float image (or its ``box`` region) with Pillow: bilinear, antialiased when shrinking."""
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    if im.size == (width, height) and box is None:
        return np.asarray(im, dtype=np.float32)
    out = im.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=REDUCING_GAP)
    return np.asarray(out, dtype=np.float32)


def to_model_input(image: DecodedImage | np.ndarray, spec: ImageSpec) -> np.ndarray:
    """A decoded image (or an ``[H, W]`` array in ``[0, 1]``) -> ``float32 [1, spec.height, spec.width, 1]``.

    The whole image is resized (no crop, aspect ratio not kept), exactly as the
    training data were. Pass the :class:`DecodedImage` itself so that a partial
    edge block left by the area reduction is weighted exactly.
    """
    if isinstance(image, DecodedImage):
        pixels, box = image.pixels, image.box
    else:
        pixels, box = image, None
    small = np.clip(resize(pixels, spec.width, spec.height, box=box), 0.0, 1.0)
    return small[np.newaxis, :, :, np.newaxis].astype(np.float32)
