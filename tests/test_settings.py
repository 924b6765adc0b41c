"""region.toml → typed settings: defaults, the shipped file, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfabric.settings import SettingsError, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def _hospital(system: str, url: str, dialect: str) -> dict[str, object]:
    systems = {system: {"url": url, "dialect": dialect}}
    return {"hospitals": [{"id": "H01", "name": "a", "systems": systems}]}


def test_shipped_region_toml_is_valid() -> None:
    s = load_settings(ROOT / "region.toml")
    assert s.region.code == "350100"
    assert s.simulator.hospitals == 5
    assert s.simulator.start_date.isoformat() == "2025-01-01"


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None)
    assert s.simulator.seed == 7 and s.hospitals == []


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"region": {"nmae": "x"}}, "region.nmae: unknown key"),
        ({"simulator": {"hospitals": 0}}, "simulator.hospitals: Input should be greater than"),
        ({"simulator": {"shared_share": 1.5}}, "simulator.shared_share"),
        ({"region": {"code": "999999"}}, "region.code: '999999' is not a GB/T 2260 city code"),
        ({"bogus": 1}, "bogus: unknown key"),
        (_hospital("HIS", "x", "ruixin"), "hospitals[0].systems.HIS.url"),
        (_hospital("HIS", "sqlite:///a.db", "oracle"), "hospitals[0].systems.HIS.dialect"),
        (_hospital("XIS", "sqlite:///a.db", "ruixin"), "hospitals[0].systems.XIS"),
        (
            {"hospitals": [{"id": "H01", "name": "a"}, {"id": "H01", "name": "b"}]},
            "duplicate hospital id",
        ),
    ],
)
def test_bad_settings_name_the_key(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(doc, source="region.toml")
    assert needle in str(err.value)
    assert str(err.value).startswith("region.toml: ")


def test_unreadable_file_is_a_settings_error(tmp_path: Path) -> None:
    bad = tmp_path / "region.toml"
    bad.write_text("[region\nname=", encoding="utf-8")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="no such settings file"):
        load_settings(tmp_path / "missing.toml")


def test_hospital_lookup_names_known_ids() -> None:
    s = parse_settings({"hospitals": [{"id": "H01", "name": "a"}]})
    assert s.hospital("H01").name == "a"
    with pytest.raises(SettingsError, match=r"unknown hospital 'H09' \(configured: H01\)"):
        s.hospital("H09")
