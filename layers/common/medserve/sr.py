"""DICOM outputs of an image prediction: a TID 1500 Measurement Report and a heatmap overlay.

:func:`measurement_report` turns one prediction on a DICOM source image into a
Comprehensive 3D SR instance (TID 1500 "Imaging Measurement Report") built by
highdicom:

- the observer is a **device** (the model: UID derived from its sha256, name =
  model id, manufacturer MedServe, model name, serial = version);
- one TID 1501 measurement group per output label: the finding (coded, see
  :data:`FINDING_CODES`), its **probability** (DCM 122157 "Probability", UCUM
  ``1``), the algorithm identification of TID 4019 (name = model id, version,
  parameters ``sha256:<hex>``, the decision threshold, training data), and the
  source image; the positive label's group also states the model's decision as a
  qualitative evaluation (finding = Present / Absent at the threshold);
- the instance belongs to the source's study: same Study Instance UID, the
  source's Patient and Study modules copied (highdicom copies them from the
  evidence), new Series and SOP Instance UIDs, and the source image listed in the
  evidence and the image library.

With a CAM heatmap, :func:`heatmap_capture` makes a Secondary Capture image
(8-bit MONOCHROME2, on the source's pixel grid, so a viewer can overlay it)
in its own series of the same study, referencing the source image in its
Source Image Sequence; :func:`multipart_related` packs both into one
``multipart/related; type="application/dicom"`` body (DICOMweb PS3.18 style).

pydicom and highdicom are imported only when a DICOM output is asked for, and
their loggers are silenced at import (:func:`silence_dicom_logging`): their
messages can quote element values (patient names, dates). Identifiers copied
from the source go into the returned bytes only.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DICOM = "application/dicom"
MANUFACTURER = "MedServe"
SR_SERIES_NUMBER = 9901
"""Series Number of MedServe SR instances (a new series in the source's study)."""
SC_SERIES_NUMBER = 9902
"""Series Number of MedServe heatmap Secondary Captures."""
SERIES_DESCRIPTION = "MedServe AI result (research use only, not for clinical use)"

FINDING_CODES: dict[str, tuple[str, str, str]] = {
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "normal": ("17621005", "SCT", "Normal"),
}
"""Label -> (code value, coding scheme designator, code meaning) for common labels.

A manifest may add or override codes with ``{"dicom": {"findings": {label: [value,
scheme, meaning]}}}``; any other label gets a code of the private scheme
``99MEDSERVE`` (value = the label), so a new model needs no code.
"""
PRIVATE_SCHEME = "99MEDSERVE"
_DICOM_LOGGERS = ("pydicom", "highdicom")


def silence_dicom_logging() -> None:
    """Stop pydicom and highdicom log records from reaching any handler.

    Their messages can quote element values (a patient name in a VR warning).
    Errors still surface as exceptions; only the logging is cut.
    """
    for name in _DICOM_LOGGERS:
        log = logging.getLogger(name)
        log.setLevel(logging.CRITICAL + 1)
        log.propagate = False
        for handler in list(log.handlers):
            log.removeHandler(handler)
        log.addHandler(logging.NullHandler())


silence_dicom_logging()  # at import: whoever imports this module gets quiet DICOM libraries


@dataclass(frozen=True)
class DicomOutputs:
    """What :func:`build` returns.

    Attributes
    ----------
    sr
        The encoded SR instance (Part 10 file bytes).
    heatmap
        The encoded Secondary Capture of the heatmap, or ``None``.
    """

    sr: bytes
    heatmap: bytes | None = None

    def body(self) -> tuple[bytes, str]:
        """The HTTP body and its Content-Type: the SR alone, or both as multipart/related."""
        if self.heatmap is None:
            return self.sr, DICOM
        return multipart_related([self.sr, self.heatmap])


def _hd() -> Any:
    silence_dicom_logging()
    import highdicom

    return highdicom


def read_source(data: bytes) -> Dataset:
    """Read a DICOM source image's attributes (no pixel data) from its bytes."""
    silence_dicom_logging()
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(BytesIO(data), force=True, stop_before_pixels=True)
    return with_type2_attributes(ds)


TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
"""Patient and General Study attributes of Type 2: present in a conformant image, possibly empty."""


def with_type2_attributes(ds: Dataset) -> Dataset:
    """Add the Type 2 Patient/Study attributes a source lacks, empty (as the standard allows).

    Many radiographs in the wild omit some (no PatientSex, no StudyID); highdicom copies
    them into the SR and needs them present. Values present are never changed.
    """
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def finding_code(label: str, manifest: dict[str, Any] | None = None) -> Any:
    """The coded concept of an output label (manifest ``dicom.findings`` first, then :data:`FINDING_CODES`)."""
    hd = _hd()
    custom = ((manifest or {}).get("dicom") or {}).get("findings") or {}
    value, scheme, meaning = custom.get(label) or FINDING_CODES.get(label.lower()) or (label, PRIVATE_SCHEME, label)
    return hd.sr.CodedConcept(value=str(value), scheme_designator=str(scheme), meaning=str(meaning))


def device_uid(sha256: str) -> str:
    """A stable DICOM UID for a model version, derived from its ONNX sha256 (``2.25.<int>``)."""
    return f"2.25.{uuid.UUID(hex=sha256[:32]).int}"


def _to_bytes(ds: Dataset) -> bytes:
    import pydicom

    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _positive_label(entry: Any, labels: list[str]) -> tuple[str, float]:
    outputs = entry.manifest.get("outputs", {})
    return str(outputs.get("positive_label", labels[-1])), float(outputs.get("threshold", 0.5))


def measurement_report(source: Dataset, entry: Any, prediction: dict[str, Any]) -> Any:
    """The TID 1500 Measurement Report of one prediction, as a highdicom ``Comprehensive3DSR``.

    Parameters
    ----------
    source
        The source image's dataset (pixel data not needed).
    entry
        The model (``.id``, ``.version``, ``.sha256``, ``.synthetic``, ``.manifest``).
    prediction
        ``{"label", "probabilities": {label: p}}`` as the imaging route answers it.
    """
    hd = _hd()
    from pydicom.sr.codedict import codes

    probabilities: dict[str, float] = {str(k): float(v) for k, v in prediction["probabilities"].items()}
    labels = list(probabilities)
    positive, threshold = _positive_label(entry, labels)
    parameters = [f"sha256:{entry.sha256}", f"decision threshold for {positive}: {threshold:.6g}"]
    parameters.append("trained on synthetic data" if entry.synthetic else "research use only")
    algorithm = hd.sr.AlgorithmIdentification(
        name=entry.id, version=entry.version, parameters=parameters, manufacturer=MANUFACTURER
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(entry.sha256),
            name=entry.id,
            manufacturer_name=MANUFACTURER,
            model_name=entry.id,
            serial_number=entry.version,
        ),
    )
    unit = hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units")
    source_image = hd.sr.SourceImageForMeasurementGroup.from_source_image(source)
    groups = []
    for label in labels:
        finding = finding_code(label, entry.manifest)
        evaluations = []
        if label == positive:
            present = codes.SCT.Present if probabilities[label] >= threshold else codes.SCT.Absent
            evaluations.append(hd.sr.QualitativeEvaluation(name=finding, value=present))
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{entry.id} {label}"),
                finding_type=finding,
                algorithm_id=algorithm,
                source_images=[source_image],
                measurements=[
                    hd.sr.Measurement(
                        name=codes.DCM.Probability,
                        value=round(probabilities[label], 6),
                        unit=unit,
                    )
                ],
                qualitative_evaluations=evaluations or None,
            )
        )
    context = hd.sr.ObservationContext(observer_device_context=observer)
    try:
        report = hd.sr.MeasurementReport(
            observation_context=context,
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
            referenced_images=[source],
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        # The image library entry needs the modality's descriptors (a radiograph's Patient
        # Orientation and Imager Pixel Spacing), which many CR/DX files leave out; the library
        # is optional, and the groups and the evidence still reference the source.
        report = hd.sr.MeasurementReport(
            observation_context=context,
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sr = hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report,
            series_instance_uid=hd.UID(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
        )
    sr.SeriesDescription = SERIES_DESCRIPTION
    sr.ManufacturerModelName = entry.id
    sr.SoftwareVersions = entry.version
    return sr


def heatmap_pixels(cam: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """A CAM grid as 8-bit pixels on the source grid: positive part, bilinear, then max scaled to 255."""
    from PIL import Image

    positive = np.nan_to_num(np.maximum(np.asarray(cam, dtype=np.float32), 0.0), posinf=0.0)
    if positive.ndim != 2:
        raise ValueError("a heatmap must be a 2-D array")
    grid = Image.fromarray(positive, mode="F").resize((columns, rows), Image.Resampling.BILINEAR)
    big = np.maximum(np.asarray(grid, dtype=np.float32), 0.0)
    top = float(big.max()) if big.size else 0.0
    scaled = big / top if top > 0 else np.zeros_like(big)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _cam_grid(heatmap: np.ndarray | dict[str, Any]) -> np.ndarray:
    """A CAM grid, or the imaging route's rendered heatmap ``{"png": base64, ...}`` as an array."""
    if isinstance(heatmap, dict):
        import base64

        from PIL import Image

        with Image.open(BytesIO(base64.b64decode(heatmap["png"]))) as im:
            return np.asarray(im.convert("L"), dtype=np.float32)
    return np.asarray(heatmap, dtype=np.float32)


def heatmap_capture(source: Dataset, entry: Any, cam: np.ndarray | dict[str, Any]) -> Any:
    """A Secondary Capture of the heatmap on the source's pixel grid, in the source's study.

    ``cam`` is the model's CAM grid, or the heatmap the imaging route already
    rendered (``result["heatmap"]``, a PNG). The capture references the source in its
    Source Image Sequence (purpose: source image for image processing operation) and
    copies its Pixel Spacing, so a viewer can overlay the two.
    """
    hd = _hd()
    from pydicom.dataset import Dataset as PydicomDataset

    rows, columns = int(source.Rows), int(source.Columns)
    pixels = heatmap_pixels(_cam_grid(cam), rows, columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=pixels,
            photometric_interpretation="MONOCHROME2",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=hd.UID(),
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            patient_orientation=("L", "F"),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
    ref = PydicomDataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    purpose = PydicomDataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    ref.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [ref]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"class activation map of {entry.id} {entry.version} (positive evidence, 0-255)"
    sc.SeriesDescription = f"{SERIES_DESCRIPTION}: heatmap"
    sc.ManufacturerModelName = entry.id
    sc.SoftwareVersions = entry.version
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in source:
            setattr(sc, keyword, source[keyword].value)
    sc.BurnedInAnnotation = "NO"
    return sc


def build(
    source: Dataset | bytes,
    entry: Any,
    prediction: dict[str, Any],
    heatmap: np.ndarray | dict[str, Any] | None = None,
    *,
    field: str = "body",
) -> DicomOutputs:
    """Encode the SR (and the heatmap capture when a heatmap is given) of one prediction.

    The imaging route can pass what it has: ``build(request.data, entry,
    result["prediction"], heatmap=result["heatmap"])``.

    Raises
    ------
    medserve.problems.Problem
        422 naming ``field`` when the source's attributes cannot go into an SR; the
        problem quotes no value.
    """
    from pydicom.errors import InvalidDicomError

    from medserve.problems import unprocessable

    try:
        ds = read_source(bytes(source)) if isinstance(source, bytes | bytearray) else source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sr = _to_bytes(measurement_report(ds, entry, prediction))
            sc = None if heatmap is None else _to_bytes(heatmap_capture(ds, entry, heatmap))
    except (AttributeError, KeyError, TypeError, ValueError, EOFError, InvalidDicomError) as exc:
        # highdicom refuses sources whose Patient/Study attributes break their VR rules (a
        # multi-valued Patient's Name, a missing Study Instance UID). Its message may quote the
        # value, so only the exception type is named, and the cause is dropped.
        raise unprocessable(
            [(field, f"the DICOM attributes of the image do not allow a DICOM SR ({type(exc).__name__})")]
        ) from None
    return DicomOutputs(sr=sr, heatmap=sc)


def multipart_related(parts: list[bytes], media_type: str = DICOM) -> tuple[bytes, str]:
    """Pack DICOM instances into one ``multipart/related`` body (PS3.18 style).

    Returns
    -------
    tuple
        ``(body, content_type)``; the content type names the boundary.
    """
    boundary = f"medserve-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("ascii"))
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks), f'multipart/related; type="{media_type}"; boundary={boundary}'
