"""DICOM Part-10 writer for the synthetic region's PACS.

One call to :func:`write_instance` writes one small but well-formed DICOM file: CT, MR, DX, US and
ES images, 12-lead ECG waveforms, and bone-densitometry (BMD) report captures.

Invariants
----------
* Every file is a DICOM Part-10 file (128-byte zero preamble, ``DICM``, file meta group with a
  correct group length) in Explicit VR Little Endian. ``MediaStorageSOPClassUID`` and
  ``MediaStorageSOPInstanceUID`` equal the dataset's ``SOPClassUID`` and ``SOPInstanceUID``; the
  Implementation Class UID and Version Name are pydicom's defaults.
* ``SpecificCharacterSet`` is always ``GB18030``, which covers all of Unicode, so every string --
  including 4-byte characters outside the BMP such as U+2003E -- round-trips exactly through
  ``pydicom.dcmread``. Only the VRs the standard puts under the character set (SH, LO, ST, LT, UC,
  UT, PN) are GB18030-encoded; all others are ASCII.
* Output is a pure function of ``(spec, seed)``: the same spec and seed give byte-identical files.
  Nothing reads the wall clock, the environment or global random state; every date and time is
  derived from ``spec.study_datetime`` (naive datetimes are taken as China Standard Time, +0800):
  study, series, content, creation and (ECG) acquisition date/time are all that instant, to the
  second.
* SOP class per modality is fixed (:data:`SOP_CLASS_BY_MODALITY`). ECG is a real 12-lead ECG
  Waveform Storage object (12 channels x 500 samples at 500 Hz, signed 16-bit, MDC lead codes of
  CID 3001, limb leads consistent with Einthoven/Goldberger). BMD has no native DICOM storage
  class, so it is a Secondary Capture (a DXA workstation's report screen, ConversionType WSD) with
  Modality ``BMD``, which is a defined term of the Modality attribute (DICOM CID 29/33).
* Speed: each modality's dataset is built once with pydicom and compiled to a byte template --
  static elements pre-encoded by pydicom, per-instance elements left as slots. A write only
  encodes the slots, so a call costs a fraction of a millisecond. Compiled templates are
  immutable, so concurrent writers are safe. The byte output equals what ``pydicom.dcmwrite``
  produces for the same dataset (checked by the tests against :func:`_encode_with_pydicom`).
* Inputs are validated against the VR limits they land in (SH 16, LO 64, PN 64 per component
  group, valid UIDs, no backslashes or control characters, BodyPartExamined an upper-case CS
  term); violations raise :class:`ValueError`
  instead of producing a file that pydicom would warn about.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_data_element
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    TwelveLeadECGWaveformStorage,
    UltrasoundImageStorage,
    VLEndoscopicImageStorage,
)

__all__ = [
    "ECG_LEADS",
    "ECG_SAMPLES",
    "ECG_SAMPLING_HZ",
    "ECG_UV_PER_COUNT",
    "MANUFACTURER",
    "MODALITIES",
    "SOP_CLASS_BY_MODALITY",
    "InstanceSpec",
    "encode_instance",
    "make_uid",
    "write_instance",
]

SOP_CLASS_BY_MODALITY: Final[dict[str, UID]] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "US": UltrasoundImageStorage,
    "ES": VLEndoscopicImageStorage,
    "ECG": TwelveLeadECGWaveformStorage,
    "BMD": SecondaryCaptureImageStorage,
}
"""SOP Class UID per ``InstanceSpec.modality``; the Modality tag is written as given."""

MODALITIES: Final[frozenset[str]] = frozenset(SOP_CLASS_BY_MODALITY)
MANUFACTURER: Final = "medfabric-sim"

_SOFTWARE_VERSION: Final = "1"
_CHARSET: Final = "GB18030"
_DEFAULT_TZ: Final = "+0800"
_PLACEHOLDER_UID: Final = "2.25.0"
_SEXES: Final = frozenset({"M", "F", "O"})
_UID_RE: Final = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_CHARSET_VRS: Final = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_LONG_VRS: Final = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)  # explicit VR elements with a 2-byte reserved field and a 4-byte length

# --------------------------------------------------------------------------------------------
# UIDs
# --------------------------------------------------------------------------------------------


def make_uid(*parts: str | int) -> str:
    """Return a deterministic DICOM UID derived from ``parts``.

    The UID is ``'2.25.'`` followed by the decimal value of the first 128 bits of SHA-256 over
    the parts (the UUID-derived form of PS3.5 B.2), so it is at most 44 characters long and has no
    leading zeros. Each part is rendered with ``str`` (an int and its decimal string are the same
    part) and length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` give different UIDs.

    Raises:
        ValueError: if no parts are given.
        TypeError: if a part is not a ``str`` or ``int`` (``bool`` is rejected).
    """
    if not parts:
        raise ValueError("make_uid needs at least one part")
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise TypeError(f"make_uid parts must be str or int, got {type(part).__name__}")
        raw = str(part).encode("utf-8")
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return "2.25." + str(int.from_bytes(digest.digest()[:16], "big"))


# --------------------------------------------------------------------------------------------
# Instance specification and validation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """Everything that varies between two DICOM instances written by the simulator."""

    path: Path
    patient_name: str
    patient_id: str
    birth_date: date | None
    sex: str
    study_uid: str
    series_uid: str
    sop_uid: str
    accession_number: str
    modality: str
    study_description: str
    body_part: str
    study_datetime: datetime
    institution_name: str
    series_number: int
    instance_number: int
    series_description: str = ""
    referring_physician: str = ""


def _check_text(name: str, value: str, max_chars: int) -> None:
    if len(value) > max_chars:
        raise ValueError(f"{name} is longer than {max_chars} characters: {value!r}")
    if "\\" in value:
        raise ValueError(f"{name} must not contain a backslash: {value!r}")
    if any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"{name} must not contain control characters: {value!r}")


def _check_person_name(name: str, value: str) -> None:
    _check_text(name, value, 3 * 64 + 2)
    groups = value.split("=")
    if len(groups) > 3:
        raise ValueError(f"{name} has more than 3 component groups: {value!r}")
    for group in groups:
        if len(group) > 64 or group.count("^") > 4:
            raise ValueError(f"{name} has an over-long component group: {value!r}")


def _validate(spec: InstanceSpec) -> None:
    if spec.modality not in SOP_CLASS_BY_MODALITY:
        raise ValueError(
            f"unsupported modality {spec.modality!r}; expected one of {sorted(MODALITIES)}"
        )
    if spec.sex not in _SEXES:
        raise ValueError(f"sex must be one of 'M', 'F', 'O', got {spec.sex!r}")
    for field in ("study_uid", "series_uid", "sop_uid"):
        value = getattr(spec, field)
        if len(value) > 64 or not _UID_RE.fullmatch(value):
            raise ValueError(f"{field} is not a valid DICOM UID: {value!r}")
    _check_text("accession_number", spec.accession_number, 16)
    _check_text("patient_id", spec.patient_id, 64)
    _check_text("study_description", spec.study_description, 64)
    _check_text("series_description", spec.series_description, 64)
    _check_text("institution_name", spec.institution_name, 64)
    _check_text("body_part", spec.body_part, 16)
    body_part_ok = spec.body_part.isascii() and spec.body_part == spec.body_part.upper()
    if not body_part_ok or any(not (c.isalnum() or c in " _") for c in spec.body_part):
        raise ValueError(f"body_part must be an upper-case DICOM CS term, got {spec.body_part!r}")
    _check_person_name("patient_name", spec.patient_name)
    _check_person_name("referring_physician", spec.referring_physician)
    for field in ("series_number", "instance_number"):
        number = getattr(spec, field)
        if not 0 <= number <= 2**31 - 1:
            raise ValueError(f"{field} out of IS range: {number}")
    if spec.birth_date is not None and spec.birth_date > spec.study_datetime.date():
        raise ValueError("birth_date is after study_datetime")


# --------------------------------------------------------------------------------------------
# Per-instance values
# --------------------------------------------------------------------------------------------


def _da(d: date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def _tm(dt: datetime) -> str:
    return f"{dt.hour:02d}{dt.minute:02d}{dt.second:02d}"


def _tz_offset(dt: datetime) -> str:
    offset = dt.utcoffset()
    if offset is None:
        return _DEFAULT_TZ
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _age(birth: date | None, on: date) -> str:
    """DICOM AS age (``nnnY``, ``nnnM`` under 2 years, ``nnnD`` under a month)."""
    if birth is None:
        return ""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{(on - birth).days:03d}D"


_COMMON_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("InstanceCreationDate", "DA"),
    ("InstanceCreationTime", "TM"),
    ("SOPInstanceUID", "UI"),
    ("StudyDate", "DA"),
    ("SeriesDate", "DA"),
    ("ContentDate", "DA"),
    ("StudyTime", "TM"),
    ("SeriesTime", "TM"),
    ("ContentTime", "TM"),
    ("AccessionNumber", "SH"),
    ("TimezoneOffsetFromUTC", "SH"),
    ("InstitutionName", "LO"),
    ("ReferringPhysicianName", "PN"),
    ("StudyDescription", "LO"),
    ("SeriesDescription", "LO"),
    ("PatientName", "PN"),
    ("PatientID", "LO"),
    ("IssuerOfPatientID", "LO"),
    ("PatientBirthDate", "DA"),
    ("PatientSex", "CS"),
    ("PatientAge", "AS"),
    ("BodyPartExamined", "CS"),
    ("StudyInstanceUID", "UI"),
    ("SeriesInstanceUID", "UI"),
    ("StudyID", "SH"),
    ("SeriesNumber", "IS"),
    ("InstanceNumber", "IS"),
)

_CROSS_SECTIONAL_FIELDS: Final = (
    ("FrameOfReferenceUID", "UI"),
    ("ImagePositionPatient", "DS"),
    ("SliceLocation", "DS"),
)
_FOV_MM: Final[dict[str, float]] = {"CT": 500.0, "MR": 256.0}
_SLICE_MM: Final = 5.0


def _values(spec: InstanceSpec, seed: int) -> dict[str, str | bytes]:
    """All per-instance element values, keyed by keyword; the payload is raw bytes."""
    dt = spec.study_datetime
    da = _da(dt)
    tm = _tm(dt)
    values: dict[str, str | bytes] = {
        "InstanceCreationDate": da,
        "InstanceCreationTime": tm,
        "SOPInstanceUID": spec.sop_uid,
        "StudyDate": da,
        "SeriesDate": da,
        "ContentDate": da,
        "StudyTime": tm,
        "SeriesTime": tm,
        "ContentTime": tm,
        "AccessionNumber": spec.accession_number,
        "TimezoneOffsetFromUTC": _tz_offset(dt),
        "InstitutionName": spec.institution_name,
        "ReferringPhysicianName": spec.referring_physician,
        "StudyDescription": spec.study_description,
        "SeriesDescription": spec.series_description,
        "PatientName": spec.patient_name,
        "PatientID": spec.patient_id,
        "IssuerOfPatientID": spec.institution_name,
        "PatientBirthDate": "" if spec.birth_date is None else _da(spec.birth_date),
        "PatientSex": spec.sex,
        "PatientAge": _age(spec.birth_date, dt.date()),
        "BodyPartExamined": spec.body_part,
        "StudyInstanceUID": spec.study_uid,
        "SeriesInstanceUID": spec.series_uid,
        "StudyID": spec.accession_number,
        "SeriesNumber": str(spec.series_number),
        "InstanceNumber": str(spec.instance_number),
    }
    modality = spec.modality
    if modality in _FOV_MM:
        corner = f"{-_FOV_MM[modality] / 2.0:g}"
        z = f"{-_SLICE_MM * (spec.instance_number - 1):.1f}"
        values["FrameOfReferenceUID"] = make_uid(
            "frame-of-reference", spec.study_uid, spec.series_uid
        )
        values["ImagePositionPatient"] = f"{corner}\\{corner}\\{z}"
        values["SliceLocation"] = z
    if modality == "ECG":
        values["AcquisitionDateTime"] = da + tm
    rng = np.random.default_rng(seed % (1 << 128))
    values[_PAYLOAD_KEYWORD[modality]] = _SYNTH[modality](rng)
    return values


# --------------------------------------------------------------------------------------------
# Synthetic payloads (pixels / waveforms), deterministic in the numpy Generator passed in
# --------------------------------------------------------------------------------------------

FloatArray = npt.NDArray[np.float64]

_N: Final = 32
_AXIS: Final = np.linspace(-1.0, 1.0, _N)
_XX, _YY = np.meshgrid(_AXIS, _AXIS)
_R2: Final = _XX**2 + _YY**2
_BODY: Final = (_XX / 0.85) ** 2 + (_YY / 0.65) ** 2 <= 1.0
_SPINE: Final = _XX**2 + ((_YY - 0.42) / 0.7) ** 2 <= 0.12**2

_CT_INTERCEPT: Final = -1024
_CT_HU: Final = np.where(_SPINE, 700.0, np.where(_BODY, 40.0, -1000.0))
_MR_SIGNAL: Final = np.where(_SPINE, 400.0, np.where(_BODY, 700.0, 0.0))
_DX_BASE: Final = np.where(np.abs(_XX) < 0.12, 2900.0, np.where(np.abs(_XX) < 0.8, 1500.0, 200.0))
_US_DEPTH: Final = np.hypot(_XX, _YY + 1.1)
_US_FAN: Final = (_US_DEPTH < 2.05) & (np.abs(np.arctan2(_XX, _YY + 1.1)) < 0.65)
_US_GAIN: Final = np.where(_US_FAN, 1.0 - 0.3 * _US_DEPTH / 2.05, 0.0)
_ES_VIEW: Final = (_R2 < 0.95**2)[:, :, None]
_ES_BASE: Final = np.array([205.0, 95.0, 85.0]) * (1.0 - 0.5 * _R2)[:, :, None] * _ES_VIEW
_BMD_BASE: Final = 20.0 + np.where(
    np.abs(_XX) < 0.22, 130.0 + 70.0 * (np.cos(_YY * np.pi * 4.0) > -0.6), 0.0
)


def _u16(values: FloatArray) -> bytes:
    return np.clip(np.rint(values), 0, 4095).astype("<u2").tobytes()


def _u8(values: FloatArray) -> bytes:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8).tobytes()


def _ct_pixels(rng: np.random.Generator) -> bytes:
    return _u16(_CT_HU - _CT_INTERCEPT + rng.normal(0.0, 12.0, _CT_HU.shape))


def _mr_pixels(rng: np.random.Generator) -> bytes:
    real = _MR_SIGNAL + rng.normal(0.0, 25.0, _MR_SIGNAL.shape)
    imag = rng.normal(0.0, 25.0, _MR_SIGNAL.shape)
    return _u16(np.hypot(real, imag))  # magnitude image: Rician background


def _dx_pixels(rng: np.random.Generator) -> bytes:
    return _u16(_DX_BASE + rng.normal(0.0, 40.0, _DX_BASE.shape))


def _us_pixels(rng: np.random.Generator) -> bytes:
    return _u8(rng.rayleigh(55.0, _US_GAIN.shape) * _US_GAIN)  # speckle inside a sector


def _es_pixels(rng: np.random.Generator) -> bytes:
    return _u8(_ES_BASE + rng.normal(0.0, 6.0, _ES_BASE.shape) * _ES_VIEW)


def _bmd_pixels(rng: np.random.Generator) -> bytes:
    return _u8(_BMD_BASE + rng.normal(0.0, 5.0, _BMD_BASE.shape))


ECG_SAMPLING_HZ: Final = 500
ECG_SAMPLES: Final = 500
ECG_UV_PER_COUNT: Final = 2.5
ECG_LEADS: Final[tuple[tuple[str, str], ...]] = (
    # (MDC code as in DICOM CID 3001, code meaning), in channel order
    ("2:1", "Lead I"),
    ("2:2", "Lead II"),
    ("2:61", "Lead III"),
    ("2:62", "Lead aVR"),
    ("2:63", "Lead aVL"),
    ("2:64", "Lead aVF"),
    ("2:3", "Lead V1"),
    ("2:4", "Lead V2"),
    ("2:5", "Lead V3"),
    ("2:6", "Lead V4"),
    ("2:7", "Lead V5"),
    ("2:8", "Lead V6"),
)
_ECG_T: Final = np.arange(ECG_SAMPLES, dtype=np.float64) / ECG_SAMPLING_HZ
# P, Q, R, S, T waves as Gaussians: (offset from the R peak [s], sigma [s], amplitude [mV]).
_ECG_WAVES: Final = np.array(
    [
        [-0.200, 0.025, 0.15],
        [-0.035, 0.010, -0.12],
        [0.000, 0.011, 1.10],
        [0.035, 0.012, -0.30],
        [0.270, 0.045, 0.32],
    ]
)
_PRECORDIAL_GAIN: Final = np.array([-0.55, -0.25, 0.35, 0.90, 1.10, 0.85])
_COUNTS_PER_MV: Final = 1000.0 / ECG_UV_PER_COUNT
_BEAT_LEAD_IN: Final = 200  # samples of the one-beat kernel before its R peak (0.4 s)
_BEAT_TAU: Final = (np.arange(ECG_SAMPLES, dtype=np.float64) - _BEAT_LEAD_IN) / ECG_SAMPLING_HZ
_BEAT_KERNEL: Final = (
    _ECG_WAVES[:, 2, None]
    * np.exp(-0.5 * ((_BEAT_TAU[None, :] - _ECG_WAVES[:, 0, None]) / _ECG_WAVES[:, 1, None]) ** 2)
).sum(axis=0)
"""One P-QRS-T complex in mV, R peak at sample ``_BEAT_LEAD_IN``, computed once."""


def _ecg_waveform(rng: np.random.Generator) -> bytes:
    """Synthetic sinus rhythm, sample-major int16; III == II - I exactly in counts."""
    rr = int(ECG_SAMPLING_HZ * 60.0 / rng.uniform(58.0, 98.0))  # R-R interval in samples
    gain = rng.uniform(0.8, 1.3)
    axis = np.deg2rad(rng.uniform(0.0, 75.0))
    beat = np.zeros(ECG_SAMPLES)
    kernel_len = len(_BEAT_KERNEL)
    for peak in range(int(rng.integers(0, rr)) - 2 * rr, ECG_SAMPLES + _BEAT_LEAD_IN, rr):
        start = peak - _BEAT_LEAD_IN  # sample index of the kernel's first sample
        lo, hi = max(start, 0), min(start + kernel_len, ECG_SAMPLES)
        if lo < hi:
            beat[lo:hi] += _BEAT_KERNEL[lo - start : hi - start]
    beat *= gain
    wander = 0.04 * np.sin(2.0 * np.pi * 0.3 * _ECG_T + rng.uniform(0.0, 2.0 * np.pi))
    lead_i_mv = beat * np.cos(axis) + wander + rng.normal(0.0, 0.01, ECG_SAMPLES)
    lead_ii_mv = beat * np.cos(axis - np.pi / 3.0) + wander + rng.normal(0.0, 0.01, ECG_SAMPLES)
    lead_i = np.rint(lead_i_mv * _COUNTS_PER_MV)
    lead_ii = np.rint(lead_ii_mv * _COUNTS_PER_MV)
    limb = np.stack(
        [
            lead_i,
            lead_ii,
            lead_ii - lead_i,  # III (Einthoven)
            np.rint(-(lead_i + lead_ii) / 2.0),  # aVR (Goldberger)
            np.rint(lead_i - lead_ii / 2.0),  # aVL
            np.rint(lead_ii - lead_i / 2.0),  # aVF
        ]
    )
    chest_noise = rng.normal(0.0, 0.01, (6, ECG_SAMPLES))
    chest = np.rint((_PRECORDIAL_GAIN[:, None] * beat[None, :] + chest_noise) * _COUNTS_PER_MV)
    leads = np.concatenate([limb, chest])  # (channels, samples)
    # Multiplexed order is sample-major: C1S1, C2S1, ..., CnS1, C1S2, ...
    samples: npt.NDArray[np.int16] = np.clip(leads.T, -32768, 32767).astype("<i2")
    return samples.tobytes()


_SYNTH: Final[dict[str, Callable[[np.random.Generator], bytes]]] = {
    "CT": _ct_pixels,
    "MR": _mr_pixels,
    "DX": _dx_pixels,
    "US": _us_pixels,
    "ES": _es_pixels,
    "ECG": _ecg_waveform,
    "BMD": _bmd_pixels,
}
_PAYLOAD_KEYWORD: Final = {m: "WaveformData" if m == "ECG" else "PixelData" for m in _SYNTH}
_ECG_PAYLOAD_BYTES: Final = ECG_SAMPLES * len(ECG_LEADS) * 2

# --------------------------------------------------------------------------------------------
# Template datasets (built with pydicom, once per modality)
# --------------------------------------------------------------------------------------------


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _base(modality: str, fields: tuple[tuple[str, str], ...] = ()) -> Dataset:
    sop_class = SOP_CLASS_BY_MODALITY[modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(_PLACEHOLDER_UID)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    validate_file_meta(meta, enforce_standard=True)  # adds version + pydicom implementation ids

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = _CHARSET
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = f"medfabric-sim {modality}"
    ds.SoftwareVersions = _SOFTWARE_VERSION
    for keyword, vr in _COMMON_FIELDS + fields:
        ds.add_new(keyword, vr, None)
    return ds


def _image_pixel(
    ds: Dataset, *, samples: int, photometric: str, bits_allocated: int, bits_stored: int
) -> None:
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = _N
    ds.Columns = _N
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.add_new("PixelData", "OW" if bits_allocated > 8 else "OB", b"")


def _cross_sectional(modality: str) -> Dataset:
    ds = _base(modality, _CROSS_SECTIONAL_FIELDS)
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    spacing = f"{_FOV_MM[modality] / _N:g}"
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = f"{_SLICE_MM:g}"
    ds.AcquisitionNumber = 1
    _image_pixel(ds, samples=1, photometric="MONOCHROME2", bits_allocated=16, bits_stored=12)
    return ds


def _build_ct() -> Dataset:
    ds = _cross_sectional("CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.RescaleIntercept = str(_CT_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.KVP = "120"
    ds.ConvolutionKernel = "STANDARD"
    return ds


def _build_mr() -> Dataset:
    ds = _cross_sectional("MR")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = "500"
    ds.EchoTime = "15"
    ds.EchoTrainLength = "1"
    ds.MagneticFieldStrength = "1.5"
    ds.ImagedNucleus = "1H"
    return ds


def _build_dx() -> Dataset:
    ds = _base("DX")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientOrientation = ""
    ds.ImageLaterality = "U"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = ["12.5", "12.5"]
    _image_pixel(ds, samples=1, photometric="MONOCHROME2", bits_allocated=16, bits_stored=12)
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.KVP = "125"
    return ds


def _build_us() -> Dataset:
    ds = _base("US")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ""
    _image_pixel(ds, samples=1, photometric="MONOCHROME2", bits_allocated=8, bits_stored=8)
    ds.LossyImageCompression = "00"
    return ds


def _build_es() -> Dataset:
    ds = _base("ES")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ""
    _image_pixel(ds, samples=3, photometric="RGB", bits_allocated=8, bits_stored=8)
    ds.LossyImageCompression = "00"
    ds.AcquisitionContextSequence = Sequence()
    return ds


def _build_bmd() -> Dataset:
    ds = _base("BMD")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "WSD"  # captured from the densitometry workstation's report screen
    ds.PatientOrientation = ""
    _image_pixel(ds, samples=1, photometric="MONOCHROME2", bits_allocated=8, bits_stored=8)
    ds.BurnedInAnnotation = "YES"
    return ds


_ECG_PLACEHOLDER: Final = b"\xa5\x5a" * (_ECG_PAYLOAD_BYTES // 2)  # located, then spliced


def _build_ecg() -> Dataset:
    ds = _base("ECG", (("AcquisitionDateTime", "DT"),))
    ds.AcquisitionContextSequence = Sequence()
    channels = Sequence()
    for code, meaning in ECG_LEADS:
        channel = Dataset()
        channel.ChannelSourceSequence = Sequence([_code_item(code, "MDC", meaning)])
        channel.ChannelSensitivity = f"{ECG_UV_PER_COUNT:g}"
        channel.ChannelSensitivityUnitsSequence = Sequence([_code_item("uV", "UCUM", "microvolt")])
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.ChannelSampleSkew = "0"
        channel.WaveformBitsStored = 16
        channel.FilterLowFrequency = "0.05"
        channel.FilterHighFrequency = "150"
        channels.append(channel)
    group = Dataset()
    group.MultiplexGroupTimeOffset = "0"
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(ECG_LEADS)
    group.NumberOfWaveformSamples = ECG_SAMPLES
    group.SamplingFrequency = str(ECG_SAMPLING_HZ)
    group.MultiplexGroupLabel = "RHYTHM"
    group.ChannelDefinitionSequence = channels
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.add_new("WaveformData", "OW", _ECG_PLACEHOLDER)
    ds.WaveformSequence = Sequence([group])
    return ds


_BUILDERS: Final[dict[str, Callable[[], Dataset]]] = {
    "CT": _build_ct,
    "MR": _build_mr,
    "DX": _build_dx,
    "US": _build_us,
    "ES": _build_es,
    "ECG": _build_ecg,
    "BMD": _build_bmd,
}

# --------------------------------------------------------------------------------------------
# Compiled byte templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slot:
    """A per-instance element: pre-encoded tag+VR head, then length and value at write time."""

    keyword: str
    head: bytes  # tag (group, element) + VR, little endian; empty for a raw payload splice
    long: bool  # 4-byte length form (OB, OW, SQ, UT, ...)
    pad: bytes
    codec: str

    def encode(self, value: str | bytes) -> bytes:
        data = value if isinstance(value, bytes) else value.encode(self.codec)
        if not self.head:
            return data
        if len(data) & 1:
            data += self.pad
        if self.long:
            return self.head + b"\x00\x00" + len(data).to_bytes(4, "little") + data
        if len(data) > 0xFFFF:
            raise ValueError(f"{self.keyword} value too long for a 16-bit length")
        return self.head + len(data).to_bytes(2, "little") + data


def _element(tag: int, vr: str, data: bytes) -> bytes:
    return _Slot("", _head(tag, vr), vr in _LONG_VRS, _pad(vr), "ascii").encode(data)


def _head(tag: int, vr: str) -> bytes:
    return (tag >> 16).to_bytes(2, "little") + (tag & 0xFFFF).to_bytes(2, "little") + vr.encode()


def _pad(vr: str) -> bytes:
    return b"\x00" if vr in ("UI", "OB", "UN") else b" "


@dataclass(frozen=True, slots=True)
class _Compiled:
    dataset: Dataset  # the pydicom template; never mutated after compilation
    meta_head: bytes  # (0002,0001) and (0002,0002), which follow the group length
    meta_tail: bytes  # (0002,0010) .. (0002,0013), which follow the SOP Instance UID
    segments: tuple[bytes | _Slot, ...]
    payload_bytes: int | None  # fixed payload size for payloads spliced inside a sequence


def _compile(ds: Dataset) -> _Compiled:
    meta = ds.file_meta
    meta_head = _element(0x00020001, "OB", meta.FileMetaInformationVersion) + _element(
        0x00020002, "UI", meta.MediaStorageSOPClassUID.encode()
    )
    meta_tail = (
        _element(0x00020010, "UI", meta.TransferSyntaxUID.encode())
        + _element(0x00020012, "UI", meta.ImplementationClassUID.encode())
        + _element(0x00020013, "SH", str(meta.ImplementationVersionName).encode())
    )
    variable = {keyword for keyword, _ in _COMMON_FIELDS + _CROSS_SECTIONAL_FIELDS}
    variable |= {"AcquisitionDateTime", "PixelData"}
    encodings = [_CHARSET]
    segments: list[bytes | _Slot] = []
    static = bytearray()
    payload_bytes: int | None = None

    def flush() -> None:
        if static:
            segments.append(bytes(static))
            static.clear()

    for elem in ds:
        if elem.keyword in variable:
            flush()
            codec = _CHARSET if elem.VR in _CHARSET_VRS else "ascii"
            long = elem.VR in _LONG_VRS
            segments.append(
                _Slot(elem.keyword, _head(elem.tag, elem.VR), long, _pad(elem.VR), codec)
            )
            continue
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_data_element(fp, elem, encodings)
        encoded = fp.getvalue()
        if elem.keyword == "WaveformSequence":
            before, sep, after = encoded.partition(_ECG_PLACEHOLDER)
            if not sep or _ECG_PLACEHOLDER in after:
                raise RuntimeError("cannot locate the waveform payload in its template")
            static += before
            flush()
            segments.append(_Slot("WaveformData", b"", True, b"", "ascii"))
            static += after
            payload_bytes = _ECG_PAYLOAD_BYTES
        else:
            static += encoded
    flush()
    return _Compiled(ds, meta_head, meta_tail, tuple(segments), payload_bytes)


_PREAMBLE: Final = b"\x00" * 128 + b"DICM"
_LOCK: Final = threading.Lock()
_COMPILED: dict[str, _Compiled] = {}


def _compiled(modality: str) -> _Compiled:
    compiled = _COMPILED.get(modality)
    if compiled is None:
        with _LOCK:
            compiled = _COMPILED.get(modality)
            if compiled is None:
                compiled = _compile(_BUILDERS[modality]())
                _COMPILED[modality] = compiled
    return compiled


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def encode_instance(spec: InstanceSpec, *, seed: int) -> bytes:
    """Return the complete DICOM Part-10 file for ``spec`` as bytes, without touching disk.

    ``seed`` (any int; reduced modulo 2**128) drives the synthetic pixel or waveform content.

    Raises:
        ValueError: for an unsupported modality or a value that does not fit its DICOM VR.
    """
    _validate(spec)
    compiled = _compiled(spec.modality)
    values = _values(spec, seed)
    if compiled.payload_bytes is not None:
        payload = values[_PAYLOAD_KEYWORD[spec.modality]]
        if len(payload) != compiled.payload_bytes:
            raise RuntimeError("waveform payload size does not match its template")
    meta = (
        compiled.meta_head + _element(0x00020003, "UI", spec.sop_uid.encode()) + compiled.meta_tail
    )
    parts = [_PREAMBLE, _element(0x00020000, "UL", len(meta).to_bytes(4, "little")), meta]
    for segment in compiled.segments:
        parts.append(
            segment if isinstance(segment, bytes) else segment.encode(values[segment.keyword])
        )
    return b"".join(parts)


def write_instance(spec: InstanceSpec, *, seed: int) -> int:
    """Write one DICOM Part-10 file to ``spec.path`` (parents created); return bytes written.

    The file is a pure function of ``(spec, seed)``; see :func:`encode_instance`.

    Raises:
        ValueError: for an unsupported modality or a value that does not fit its DICOM VR.
    """
    data = encode_instance(spec, seed=seed)
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    spec.path.write_bytes(data)
    return len(data)


def _encode_with_pydicom(spec: InstanceSpec, *, seed: int) -> bytes:
    """Reference encoder: the same instance written by ``pydicom.dcmwrite`` (slow; for tests)."""
    _validate(spec)
    ds = copy.deepcopy(_compiled(spec.modality).dataset)
    for keyword, value in _values(spec, seed).items():
        target = ds.WaveformSequence[0] if keyword == "WaveformData" else ds
        element: DataElement = target[keyword]
        element.value = value
    ds.file_meta.MediaStorageSOPInstanceUID = UID(spec.sop_uid)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
