"""Generate the dialects' code tables (`standards/data/mappings/codes/<dialect>.csv`).

A code table says, for one dialect, which standard code each of its local codes stands for,
under the domain name a source mapping's ``code:`` uses (a value domain of
``value_domains/domains.yaml`` or a code system). The rows come from the simulator's own code
enumeration (the one behind ``truth/code_maps.csv``), renamed to the platform's domains.
The platform never runs this module; the files it writes are committed data. Regenerate them
after changing a dialect's codes::

    .venv/bin/python -m medfabric.simulator.dialects.codemaps \\
        --out src/medfabric/standards/data/mappings/codes
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping
from pathlib import Path

from medfabric.simulator.dialects import DIALECTS
from medfabric.simulator.region import _domains

# Simulator code domain → the platform's name (value domain or code system).
PLATFORM_DOMAIN: Mapping[str, str] = {
    "sex": "sex",
    "id_type": "id_doc_type",
    "ethnicity": "ethnicity",
    "marital": "marital_status",
    "visit_type": "visit_type",
    "dept": "department",
    "disposition": "discharge_disposition",
    "frequency": "frequency",
    "specimen": "specimen_type",
    "flag": "abnormal_flag",
    "order_status": "order_status",
    "doc_type": "document_type",
    "diag": "diagnoses",
    "drug": "drugs",
    "lab_item": "lab_items",
    "lab_panel": "lab_panels",
    "exam": "exam_items",
    "diag_type": "diagnosis_rank",
    "order_type": "order_category",
    "report_status": "report_status",
}

# Simulator standard codes that differ from the platform's codes of the renamed domain.
_RECODE: Mapping[str, Mapping[str, str]] = {
    "report_status": {"F": "2", "C": "3"},  # final, corrected (DE99.00.007.00: 1, 2, 3)
}

# Simulator domains with no DWD column to feed: lab result status (the DWD lab_result has no
# status column) — left out of the code tables.
SKIPPED: frozenset[str] = frozenset({"result_status"})

HEADER = ("domain", "local_code", "standard_code")


def code_rows(dialect: str) -> list[tuple[str, str, str]]:
    """Sorted (domain, local_code, standard_code) rows of one dialect's code table."""
    d = DIALECTS[dialect]
    rows: set[tuple[str, str, str]] = set()
    for domain in _domains():
        if domain in SKIPPED:
            continue
        name = PLATFORM_DOMAIN[domain]  # a new simulator domain must be named here
        recode = _RECODE.get(domain, {})
        for std, local in d.local_codes(domain).items():
            rows.add((name, local, recode.get(std, std)))
    return sorted(rows)


def write(out: Path) -> list[Path]:
    """Write ``<out>/<dialect>.csv`` for every dialect; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in sorted(DIALECTS):
        path = out / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(HEADER)
            w.writerows(code_rows(name))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the code tables")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)


if __name__ == "__main__":
    main()
