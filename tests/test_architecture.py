"""The package map of DESIGN.md holds: each stage imports only what its "may use" column allows.

The rule is checked on the source (static imports), so a later issue that adds an import against
the arrows fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medfabric"

# DESIGN.md, "Packages": package → packages of ours it may import.
MAY_USE: dict[str, set[str]] = {
    "crypto": set(),
    "records": {"crypto"},
    "standards": set(),
    "simulator": {"standards"},
    "gateway": {"records", "standards", "ledger", "crypto"},
    "receiver": {"records", "warehouse", "ledger", "crypto"},
    "warehouse": {"standards"},
    "governance": {"warehouse", "standards"},
    "empi": {"warehouse", "standards"},
    "graph": {"warehouse", "standards"},
    "exports": {"warehouse", "graph"},
    "ledger": {"crypto"},
    "security": {"crypto"},
    "sharing": {"records", "warehouse", "empi", "graph", "ledger", "security"},
}
ANYTHING = {"api", "cli", "web", "demo", "settings", "__main__"}  # thin edges and shared settings
# settings.py is read by every stage; it may itself use only the standards catalog.
SETTINGS_MAY_USE = {"standards"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "medfabric":
                names += [f"medfabric.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "medfabric" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_stage_package_of_the_design_exists() -> None:
    for pkg in [*MAY_USE, "api", "cli", "web"]:
        assert (SRC / pkg / "__init__.py").is_file(), pkg


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_arrows(path: Path) -> None:
    pkg = _package_of(path)
    if pkg in ANYTHING - {"settings"} or pkg == "__init__":
        return
    allowed = SETTINGS_MAY_USE if pkg == "settings" else MAY_USE[pkg] | {"settings"}
    bad = _imports(path) - allowed - {pkg}
    assert not bad, f"{path.relative_to(SRC)} ({pkg}) imports {sorted(bad)} against DESIGN.md"


def test_standards_and_crypto_import_nothing_of_ours() -> None:
    for pkg in ("standards", "crypto"):
        for path in (SRC / pkg).rglob("*.py"):
            assert _imports(path) <= {pkg}, path
