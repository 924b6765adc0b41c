"""Tests for the synthetic PACS DICOM writer (medfabric.simulator.dicom)."""

from __future__ import annotations

import dataclasses
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.charset import decode_bytes
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from medfabric.simulator.dicom import (
    ECG_LEADS,
    ECG_SAMPLES,
    ECG_UV_PER_COUNT,
    MODALITIES,
    SOP_CLASS_BY_MODALITY,
    InstanceSpec,
    _encode_with_pydicom,
    encode_instance,
    make_uid,
    write_instance,
)

EXPECTED_SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "ES": "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image Storage
    "ECG": "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform Storage
    "BMD": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}
PIXEL_SHAPE = {
    "CT": ((32, 32), np.uint16),
    "MR": ((32, 32), np.uint16),
    "DX": ((32, 32), np.uint16),
    "US": ((32, 32), np.uint8),
    "ES": ((32, 32, 3), np.uint8),
    "BMD": ((32, 32), np.uint8),
}


def make_spec(tmp_path: Path, modality: str = "CT", **changes: object) -> InstanceSpec:
    spec = InstanceSpec(
        path=tmp_path / modality / "1.dcm",
        patient_name="林秀英",
        patient_id="ZJ0001234",
        birth_date=date(1960, 3, 4),
        sex="F",
        study_uid=make_uid("study", modality),
        series_uid=make_uid("series", modality),
        sop_uid=make_uid("sop", modality),
        accession_number="A2024050600017",
        modality=modality,
        study_description="胸部CT平扫",
        body_part="CHEST",
        study_datetime=datetime(2024, 5, 6, 9, 30, 15),
        institution_name="浙江省人民医院",
        series_number=2,
        instance_number=7,
        series_description="胸部 5mm 平扫",
        referring_physician="欧阳^建国",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def read_strict(path: Path) -> Dataset:
    """dcmread with every warning an error, forcing conversion of every element."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            _ = elem.value
        for elem in ds.file_meta:
            _ = elem.value
        if "PixelData" in ds:
            _ = ds.pixel_array
        if "WaveformSequence" in ds:
            _ = ds.waveform_array(0)
    return ds


@pytest.mark.parametrize("modality", sorted(MODALITIES))
def test_instance_round_trips_through_pydicom(tmp_path: Path, modality: str) -> None:
    spec = make_spec(tmp_path, modality)
    written = write_instance(spec, seed=11)
    assert written == spec.path.stat().st_size
    ds = read_strict(spec.path)

    assert spec.path.read_bytes()[128:132] == b"DICM"
    meta = ds.file_meta
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.ImplementationClassUID == PYDICOM_IMPLEMENTATION_UID
    assert meta.MediaStorageSOPClassUID == ds.SOPClassUID == EXPECTED_SOP_CLASS[modality]
    assert SOP_CLASS_BY_MODALITY[modality] == EXPECTED_SOP_CLASS[modality]
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == spec.sop_uid
    for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID):
        assert UID(uid).is_valid

    assert ds.Modality == modality
    assert ds.SpecificCharacterSet == "GB18030"
    assert str(ds.PatientName) == "林秀英"
    assert str(ds.ReferringPhysicianName) == "欧阳^建国"
    assert ds.ReferringPhysicianName.family_name == "欧阳"
    assert ds.StudyDescription == "胸部CT平扫"
    assert ds.SeriesDescription == "胸部 5mm 平扫"
    assert ds.InstitutionName == "浙江省人民医院"
    assert ds.PatientID == "ZJ0001234"
    assert ds.PatientBirthDate == "19600304"
    assert ds.PatientAge == "064Y"
    assert ds.PatientSex == "F"
    assert ds.AccessionNumber == ds.StudyID == "A2024050600017"
    assert ds.BodyPartExamined == "CHEST"
    assert ds.StudyDate == ds.SeriesDate == ds.ContentDate == "20240506"
    assert ds.StudyTime == ds.SeriesTime == ds.ContentTime == "093015"
    assert ds.TimezoneOffsetFromUTC == "+0800"
    assert ds.Manufacturer == "medfabric-sim"
    assert ds.SeriesNumber == 2
    assert ds.InstanceNumber == 7

    if modality == "ECG":
        assert "PixelData" not in ds
        assert ds.AcquisitionDateTime == "20240506093015"
    else:
        shape, dtype = PIXEL_SHAPE[modality]
        pixels = ds.pixel_array
        assert pixels.shape == shape
        assert pixels.dtype == dtype
        assert ds.Rows == ds.Columns == 32
        assert ds.HighBit == ds.BitsStored - 1
        assert int(pixels.max()) < 2**ds.BitsStored
        assert pixels.std() > 0


def test_ecg_waveform_is_a_consistent_twelve_lead(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "ECG", study_description="常规心电图", body_part="HEART")
    write_instance(spec, seed=3)
    ds = read_strict(spec.path)
    group = ds.WaveformSequence[0]
    assert group.NumberOfWaveformChannels == 12
    assert group.NumberOfWaveformSamples == ECG_SAMPLES
    assert float(group.SamplingFrequency) == 500.0
    assert group.WaveformBitsAllocated == 16
    assert group.WaveformSampleInterpretation == "SS"
    leads = [ch.ChannelSourceSequence[0] for ch in group.ChannelDefinitionSequence]
    assert [(c.CodeValue, c.CodeMeaning) for c in leads] == list(ECG_LEADS)
    assert {c.CodingSchemeDesignator for c in leads} == {"MDC"}
    for channel in group.ChannelDefinitionSequence:
        assert float(channel.ChannelSensitivity) == ECG_UV_PER_COUNT
        assert channel.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"

    raw = pydicom.waveforms.numpy_handler.multiplex_array(ds, 0, as_raw=True).astype(int)
    lead_i, lead_ii, lead_iii = raw[:, 0], raw[:, 1], raw[:, 2]
    assert raw.shape == (ECG_SAMPLES, 12)
    np.testing.assert_array_equal(lead_iii, lead_ii - lead_i)  # Einthoven
    assert np.abs(raw[:, 3] + (lead_i + lead_ii) / 2).max() <= 1  # aVR
    microvolts = ds.waveform_array(0)
    np.testing.assert_allclose(microvolts, raw * ECG_UV_PER_COUNT)
    assert 300 < np.ptp(microvolts[:, 1]) < 5000  # a plausible QRS in lead II, in uV


def test_ct_pixels_rescale_to_hounsfield_units(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "CT")
    write_instance(spec, seed=5)
    ds = read_strict(spec.path)
    assert ds.RescaleIntercept == -1024
    assert ds.RescaleSlope == 1
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert abs(float(hu[0:2, 0:2].mean()) + 1000) < 50  # air in the corner
    assert abs(float(hu[14:18, 14:18].mean()) - 40) < 30  # soft tissue in the middle
    position = [float(v) for v in ds.ImagePositionPatient]
    assert position[2] == float(ds.SliceLocation) == -5.0 * (spec.instance_number - 1)
    assert UID(ds.FrameOfReferenceUID).is_valid


@pytest.mark.parametrize(
    "name",
    ["林秀英", "欧阳建国", "王堃", "𠀾明", "SMITH^JOHN", "Müller^Anna", "Wang^XiaoDong=王^小东"],
)
def test_names_round_trip(tmp_path: Path, name: str) -> None:
    spec = make_spec(tmp_path, "DX", patient_name=name, referring_physician=name)
    write_instance(spec, seed=1)
    ds = read_strict(spec.path)
    assert str(ds.PatientName) == name
    assert str(ds.ReferringPhysicianName) == name
    raw = pydicom.dcmread(spec.path).get_item(0x00100010).value
    assert raw.rstrip(b" ") == name.encode("gb18030")


def test_four_byte_gb18030_character_is_stored_as_four_bytes(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "US", patient_name="𠀾")
    write_instance(spec, seed=1)
    raw = pydicom.dcmread(spec.path).get_item(0x00100010).value
    assert len(raw) == 4
    assert raw == "𠀾".encode("gb18030")


def _chrx2_path() -> str:
    path = get_testdata_file("chrX2.dcm", download=False)
    if path is None:  # pydicom keeps the charset samples outside test_files/
        matches = get_charset_files("chrX2.dcm")
        path = matches[0] if matches else None
    if path is None:
        pytest.skip("pydicom's chrX2.dcm sample is not available offline")
    return str(path)


def test_patient_name_bytes_match_pydicom_gb18030_sample(tmp_path: Path) -> None:
    original = pydicom.dcmread(_chrx2_path())
    assert original.SpecificCharacterSet == "GB18030"
    original_raw = original.get_item(0x00100010).value
    name = decode_bytes(original_raw, ["GB18030"], set())  # 'Wang^XiaoDong=王^小东='
    assert "王" in name

    spec = make_spec(tmp_path, "BMD", patient_name=name)
    write_instance(spec, seed=1)
    ours = pydicom.dcmread(spec.path)
    assert ours.get_item(0x00100010).value == original_raw
    assert ours.PatientName == original.PatientName
    assert ours.PatientName.ideographic == "王^小东"


@pytest.mark.parametrize("modality", sorted(MODALITIES))
def test_fast_encoder_matches_pydicom_dcmwrite(tmp_path: Path, modality: str) -> None:
    spec = make_spec(tmp_path, modality, patient_name="欧阳建国", birth_date=None)
    assert encode_instance(spec, seed=99) == _encode_with_pydicom(spec, seed=99)


@pytest.mark.parametrize("modality", sorted(MODALITIES))
def test_same_spec_and_seed_give_identical_bytes(tmp_path: Path, modality: str) -> None:
    first = make_spec(tmp_path, modality)
    second = dataclasses.replace(first, path=tmp_path / "again" / "1.dcm")
    assert write_instance(first, seed=42) == write_instance(second, seed=42)
    assert first.path.read_bytes() == second.path.read_bytes()
    other_seed = encode_instance(first, seed=43)
    assert other_seed != first.path.read_bytes()
    assert len(other_seed) == len(first.path.read_bytes())


def test_values_do_not_leak_between_instances(tmp_path: Path) -> None:
    full = make_spec(tmp_path, "MR")
    sparse = make_spec(
        tmp_path,
        "MR",
        path=tmp_path / "sparse.dcm",
        birth_date=None,
        sex="O",
        series_description="",
        referring_physician="",
        patient_name="DOE^JANE",
        study_datetime=datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    write_instance(full, seed=1)
    write_instance(sparse, seed=1)
    ds = read_strict(sparse.path)
    assert ds.PatientBirthDate == ""
    assert ds.PatientAge == ""
    assert ds.PatientSex == "O"
    assert ds.SeriesDescription == ""
    assert ds.ReferringPhysicianName == ""
    assert str(ds.PatientName) == "DOE^JANE"
    assert ds.StudyDate == "20230102"
    assert ds.TimezoneOffsetFromUTC == "+0000"


def test_patient_age_units() -> None:
    from medfabric.simulator.dicom import _age

    assert _age(date(2024, 1, 20), date(2024, 2, 5)) == "016D"
    assert _age(date(2023, 1, 20), date(2024, 2, 5)) == "012M"
    assert _age(date(2022, 2, 5), date(2024, 2, 5)) == "002Y"
    assert _age(None, date(2024, 2, 5)) == ""


def test_make_uid_is_deterministic_and_valid() -> None:
    uid = make_uid("study", "H001", 12345)
    assert uid == make_uid("study", "H001", 12345)
    assert uid == make_uid("study", "H001", "12345")
    assert uid.startswith("2.25.")
    assert len(uid) <= 64
    assert UID(uid).is_valid
    assert all(c == "0" or not c.startswith("0") for c in uid.split("."))
    assert make_uid("ab", "c") != make_uid("a", "bc")
    assert make_uid("study", 1) != make_uid("study", 2)
    uids = {make_uid("sop", i) for i in range(2000)}
    assert len(uids) == 2000
    assert max(len(u) for u in uids) <= 44


def test_make_uid_rejects_bad_parts() -> None:
    with pytest.raises(ValueError):
        make_uid()
    with pytest.raises(TypeError):
        make_uid(True)
    with pytest.raises(TypeError):
        make_uid(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"modality": "PET"},
        {"sex": "U"},
        {"accession_number": "A" * 17},
        {"sop_uid": "1.2.03"},
        {"series_uid": "1." + "2" * 63},
        {"study_uid": "not-a-uid"},
        {"patient_id": "P\\1"},
        {"institution_name": "医" * 65},
        {"body_part": "chest"},
        {"patient_name": "甲=乙=丙=丁"},
        {"birth_date": date(2030, 1, 1)},
    ],
)
def test_invalid_specs_are_rejected(tmp_path: Path, changes: dict[str, object]) -> None:
    spec = dataclasses.replace(make_spec(tmp_path, "CT"), **changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        write_instance(spec, seed=1)
    assert not spec.path.exists()
