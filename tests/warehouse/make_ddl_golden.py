"""Golden DWD DDL: ``tests/data/dwd_ddl.sql``, the schema script generated from the catalog.

The committed file is the reference; ``test_ddl.py`` compares the generator's output with it byte
for byte. A diff means the DWD schema changed: review it, then regenerate explicitly.

Usage::

    python tests/warehouse/make_ddl_golden.py            # exit 1 if the committed file is stale
    python tests/warehouse/make_ddl_golden.py --rewrite  # write it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medfabric.warehouse.ddl import schema_script

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "dwd_ddl.sql"


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite the golden file; 0 when it is current or was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewrite", action="store_true", help="write the golden file")
    args = parser.parse_args(argv)
    text = schema_script()
    if args.rewrite:
        GOLDEN.write_bytes(text.encode("utf-8"))
        print(f"wrote {GOLDEN}")
        return 0
    if not GOLDEN.exists() or GOLDEN.read_bytes() != text.encode("utf-8"):
        print(f"{GOLDEN} is stale; rerun with --rewrite after reviewing the change")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
