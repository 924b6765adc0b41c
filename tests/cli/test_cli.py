"""The medfabric command: bad input gets one clear line, a non-zero exit, nothing half-written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfabric.cli.main import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hospitals", "0"], "--hospitals must be at least 1 (got 0)"),
        (["--patients", "-5"], "--patients must be at least 1 (got -5)"),
        (["--days", "0"], "--days must be at least 1 (got 0)"),
        (["--shared-share", "1.5"], "--shared-share must be between 0 and 1 (got 1.5)"),
        (["--hospitals", "61"], "--hospitals must be at most 60 (got 61)"),
    ],
)
def test_invalid_options_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "region"
    code, output = _run("simulate", *args, "--out", str(out))
    assert code == 2
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_output_folder_holding_something_else_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.docx").write_text("do not lose me", encoding="utf-8")
    code, output = _run("simulate", "--hospitals", "1", "--patients", "5", "--out", str(out))
    assert code == 2 and "is not a region" in output
    assert [p.name for p in out.iterdir()] == ["thesis.docx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("x", encoding="utf-8")
    code, output = _run("simulate", "--hospitals", "1", "--patients", "5", "--out", str(out))
    assert code == 2 and "is not a folder" in output
    assert out.read_text(encoding="utf-8") == "x"


def test_bad_date_option(tmp_path: Path) -> None:
    code, output = _run("simulate", "--start-date", "2025-13-40", "--out", str(tmp_path / "r"))
    assert code == 2 and "is not a date" in output


def test_tick_on_something_that_is_not_a_region(tmp_path: Path) -> None:
    code, output = _run("simulate", "tick", "--out", str(tmp_path))
    assert code == 2 and "is not a region" in output
    code, output = _run("simulate", "tick", "--out", str(tmp_path), "--days", "0")
    assert code == 2 and "--days must be at least 1" in output


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "region.toml"
    cfg.write_text("[simulator]\nhospitlas = 3\n", encoding="utf-8")
    code, output = _run("simulate", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert code == 2 and "simulator.hospitlas: unknown key" in output
    code, output = _run("config", "check", str(cfg))
    assert code == 2 and "simulator.hospitlas: unknown key" in output


def test_generate_tick_and_regenerate(tmp_path: Path) -> None:
    out = tmp_path / "region"
    code, output = _run("simulate", "--hospitals", "2", "--patients", "40", "--seed", "3",
                        "--out", str(out), "--no-dicom", "--days", "30")  # fmt: skip
    assert code == 0, output
    assert "Region written" in output and "Injected defects" in output
    assert (out / "region.json").is_file() and (out / "H02" / "emr.db").is_file()
    code, output = _run("simulate", "tick", "--out", str(out), "--days", "2")
    assert code == 0, output
    assert re.search(r"advanced 2 day\(s\) to 2025-02-02 \(tick 1\)", output)
    # An existing region is replaced, and nothing is left beside it.
    code, output = _run("simulate", "--hospitals", "1", "--patients", "10", "--out", str(out),
                        "--no-dicom")  # fmt: skip
    assert code == 0, output
    assert not (out / "H02").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["region"]


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medfabric.simulator.region as region_mod

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(region_mod, "write_render_truth", boom)
    out = tmp_path / "region"
    result = runner.invoke(app, ["simulate", "--hospitals", "1", "--patients", "10",
                                 "--out", str(out), "--no-dicom", "--workers", "1"])  # fmt: skip
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []


def test_standards_commands() -> None:
    code, output = _run("standards", "check")
    assert code == 0 and "all code systems consistent" in output
    code, output = _run("standards", "show", "sex")
    assert code == 0 and "男" in output
    code, output = _run("standards", "show", "nonsense")
    assert code == 2 and "unknown code system 'nonsense'" in output


def test_every_command_is_documented() -> None:
    """Each CLI command and simulate option appears in README.md or docs/ (keeps docs honest)."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text("utf-8") + "".join(
        p.read_text("utf-8") for p in (root / "docs").glob("*.md")
    )
    from typer.main import get_command

    cli = get_command(app)
    assert hasattr(cli, "commands")
    for name, group in cli.commands.items():
        assert f"medfabric {name}" in text, name
        for sub in getattr(group, "commands", {}):
            assert f"medfabric {name} {sub}" in text, f"{name} {sub}"
        for param in group.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in text, f"{name} {opt}"


def _worker_killed(index: int) -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_run_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hospital worker that dies (as under the OOM killer) ends the run cleanly."""
    import medfabric.simulator.region as region_mod
    from medfabric.simulator import SimulationError, SimulationOptions, simulate_region

    monkeypatch.setattr(region_mod, "_render_hospital", _worker_killed)
    out = tmp_path / "region"
    with pytest.raises(SimulationError, match="died"):
        simulate_region(
            SimulationOptions(hospitals=2, patients=20, out=out, workers=2, dicom=False)
        )
    assert list(tmp_path.iterdir()) == []


def test_catalog_show_formats() -> None:
    import json

    code, output = _run("catalog", "show")
    assert code == 0 and "resource catalog" in output and "data elements (" in output
    code, output = _run("catalog", "show", "--format", "json", "--privacy", "direct")
    assert code == 0
    data = json.loads(output)
    assert {c["code"] for c in data["classes"]} >= {"E", "A", "K"}
    assert data["data_elements"] and all(e["privacy"] == "direct" for e in data["data_elements"])
    code, output = _run("catalog", "show", "--format", "md")
    assert code == 0 and output.startswith("# Resource catalog") and "| identifier |" in output
    code, output = _run("catalog", "show", "--privacy", "secret")
    assert code == 2 and "no data element has privacy class 'secret'" in output
