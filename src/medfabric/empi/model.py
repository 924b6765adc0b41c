"""Probabilistic matching with Splink (DuckDB backend): any table of people, with its columns
given roles, deduplicated into clusters without labels.

:func:`prepare_people` normalizes each role's column with :mod:`medfabric.empi.normalize`
(names and their tone-less pinyin, GB 11643 ID numbers with the 15 → 18-digit upgrade,
phones, birth dates, addresses to GB/T 2260 codes); :func:`match` builds the Splink model from
the roles present, trains it by expectation maximisation on the data itself, scores the blocked
pairs and clusters them at the link threshold. :func:`evaluate_clusters` compares clusters with
a ground truth (pairwise and cluster precision, recall and F1, with the confusion counts).

Invariants:
- a value that does not normalize (a malformed ID number, an empty name) is missing evidence,
  never an error; a birth date that does not parse in the given formats is an error naming the
  row and the column (:class:`InputError`), before anything is matched;
- the same input and settings give the same clusters (Splink's sampling is seeded).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from medfabric.empi.normalize import (
    address_region,
    id_facts,
    normalize_id,
    normalize_name,
    normalize_phone,
    pinyin_key,
)

__all__ = [
    "BAD_DATES",
    "DATE_FORMATS",
    "ROLES",
    "ClusterScores",
    "InputError",
    "MatchResult",
    "evaluate_clusters",
    "match",
    "prepare_people",
]

ROLES = (
    "name", "given_name", "surname", "id_number", "id_type", "birth_date", "sex", "phone",
    "address", "city", "postcode",
)  # fmt: skip
"""What a column can be: a full name, or given name and surname; a document number (and its
type, WS 364 codes: '01' resident ID); birth date; sex (GB/T 2261.1 codes, or M/F, 男/女);
phone; address (free text); city or suburb; postcode."""
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%d/%m/%Y")
_SEX = {"1": "1", "2": "2", "M": "1", "F": "2", "男": "1", "女": "2", "MALE": "1", "FEMALE": "2"}


class InputError(ValueError):
    """The input cannot be matched: a role names a missing column, no rows, a date that does
    not parse (the message names the row and the column)."""


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    s = str(v).strip()
    return s or None


BAD_DATES = ("error", "missing", "keep")


def _date(v: Any, formats: Sequence[str], row: int, column: str, bad: str) -> str | None:
    """The ISO date of ``v``; one that does not parse is an error, missing, or (``keep``) its
    digits in date shape, so that a typo (19450493) still compares with the true date."""
    s = _text(v)
    if s is None:
        return None
    for fmt in formats:
        try:
            return datetime.strptime(s, fmt).date().isoformat()
        except ValueError:
            continue
    if bad == "missing":
        return None
    digits = "".join(ch for ch in s if ch.isdigit())
    if bad == "keep" and len(digits) == 8:
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    if bad == "keep":
        return None
    raise InputError(
        f"row {row}, column {column!r}: {s!r} is not a date in any of {', '.join(formats)} "
        "(--bad-dates missing or keep to go on)"
    )


def prepare_people(
    rows: pd.DataFrame,
    roles: Mapping[str, str],
    *,
    id_column: str | None = None,
    date_formats: Sequence[str] = DATE_FORMATS,
    bad_dates: str = "error",
) -> pd.DataFrame:
    """The normalized table Splink matches on: ``unique_id`` (``id_column``'s value, else the
    row number) and one column per comparison the roles allow.

    Args:
        rows: The input, one person record per row (all values as text).
        roles: Role (:data:`ROLES`) → column of ``rows``.
        id_column: The column holding each record's identity.
        date_formats: Formats tried in order for ``birth_date``.
        bad_dates: What a birth date that parses in none of them is: ``error`` (the default),
            ``missing``, or ``keep`` (its digits kept as text, compared by edit distance).

    Raises:
        InputError: An unknown role, a column not in ``rows``, no rows, an unparseable date.
    """
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InputError(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
    wanted = [*roles.values(), *([id_column] if id_column else [])]
    missing = [c for c in wanted if c not in rows.columns]
    if missing:
        raise InputError(
            f"column {missing[0]!r} is not in the input (columns: {', '.join(rows.columns)})"
        )
    if rows.empty:
        raise InputError("the input has no rows")
    if bad_dates not in BAD_DATES:
        raise InputError(f"bad_dates must be one of {', '.join(BAD_DATES)}")
    if not ({"name", "given_name", "surname"} & set(roles)):
        raise InputError("give a name: the role name, or given_name and surname")
    out: dict[str, list[Any]] = {"unique_id": []}
    cols = {r: rows[c].tolist() for r, c in roles.items()}
    ids = rows[id_column].astype(str).tolist() if id_column else [str(i) for i in range(len(rows))]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise InputError(f"column {id_column!r}: the id {dup!r} is not unique")
    names = ("name", "name_pinyin", "given_name", "surname", "id_number", "birth_date", "sex",
             "phone", "district", "city_code", "address_text", "city", "postcode")  # fmt: skip
    for n in names:
        out[n] = []
    for i in range(len(rows)):
        row = i + 2  # the CSV line: 1 is the header
        out["unique_id"].append(ids[i])
        get = {r: v[i] for r, v in cols.items()}
        full = normalize_name(_text(get.get("name")))
        out["name"].append(full)
        out["name_pinyin"].append(pinyin_key(full))
        out["given_name"].append(normalize_name(_text(get.get("given_name"))))
        out["surname"].append(normalize_name(_text(get.get("surname"))))
        number = normalize_id(_text(get.get("id_type")), _text(get.get("id_number")))
        out["id_number"].append(number)
        birth = (
            _date(get.get("birth_date"), date_formats, row, roles["birth_date"], bad_dates)
            if "birth_date" in roles
            else None
        )
        facts = id_facts(number)
        if birth is None and facts is not None:
            birth = facts[0].isoformat()  # a resident ID carries the birth date
        out["birth_date"].append(birth)
        sex = _SEX.get((_text(get.get("sex")) or "").upper())
        out["sex"].append(sex if sex else (facts[1] if facts else None))
        out["phone"].append(normalize_phone(_text(get.get("phone"))))
        address = _text(get.get("address"))
        _, city_code, district = address_region(address)
        out["district"].append(district)
        out["city_code"].append(city_code)
        out["address_text"].append(normalize_name(address) if address else None)
        out["city"].append(normalize_name(_text(get.get("city"))))
        out["postcode"].append(_text(get.get("postcode")))
    frame = pd.DataFrame(out)
    # Columns no record fills carry no evidence: Splink gets only the others.
    empty = [c for c in names if frame[c].isna().all()]
    return frame.drop(columns=empty)


def _comparisons(columns: set[str]) -> list[Any]:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    out: list[Any] = []
    if "name" in columns:
        levels: list[Any] = [
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name"),
            cll.CustomLevel('"name_pinyin_l" = "name_pinyin_r"', label_for_charts="same pinyin"),
            cll.JaroWinklerLevel("name_pinyin", 0.9),
            cll.LevenshteinLevel("name", 1),
            cll.ElseLevel(),
        ]
        out.append(cl.CustomComparison(comparison_levels=levels, output_column_name="name"))
    for part in ("given_name", "surname"):
        if part in columns:
            out.append(cl.NameComparison(part))
    if "id_number" in columns:
        out.append(cl.ExactMatch("id_number"))
    if "birth_date" in columns:
        swapped = (
            'substr("birth_date_l", 1, 4) = substr("birth_date_r", 1, 4) AND '
            'substr("birth_date_l", 6, 2) = substr("birth_date_r", 9, 2) AND '
            'substr("birth_date_l", 9, 2) = substr("birth_date_r", 6, 2)'
        )
        levels = [
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            cll.CustomLevel(swapped, label_for_charts="day and month transposed"),
            cll.LevenshteinLevel("birth_date", 1),
            cll.ElseLevel(),
        ]
        out.append(cl.CustomComparison(comparison_levels=levels, output_column_name="birth_date"))
    if "sex" in columns:
        out.append(cl.ExactMatch("sex"))
    if "phone" in columns:
        out.append(cl.ExactMatch("phone"))
    if "district" in columns or "city_code" in columns:
        levels = [cll.NullLevel("city_code")]
        if "district" in columns:
            levels.append(cll.ExactMatchLevel("district"))
        levels += [cll.ExactMatchLevel("city_code"), cll.ElseLevel()]
        out.append(cl.CustomComparison(comparison_levels=levels, output_column_name="region"))
    elif "address_text" in columns:
        out.append(cl.LevenshteinAtThresholds("address_text", [1, 3]))
    for exact in ("city", "postcode"):
        if exact in columns:
            out.append(cl.ExactMatch(exact))
    return out


def _blocking(columns: set[str]) -> list[Any]:
    from splink import block_on

    keys = [
        ("id_number",), ("phone",), ("name_pinyin", "birth_date"), ("birth_date", "sex"),
        ("surname", "birth_date"), ("given_name", "birth_date"), ("surname", "postcode"),
        ("given_name", "postcode"), ("name_pinyin", "city_code"), ("address_text",),
    ]  # fmt: skip
    rules = [block_on(*k) for k in keys if set(k) <= columns]
    if not rules:
        raise InputError("the roles given leave no way to find candidate pairs")
    return rules


def _pandas(sdf: Any) -> pd.DataFrame:
    frame: pd.DataFrame = sdf.as_pandas_dataframe()
    return frame


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Clusters (``unique_id`` → cluster id: the smallest member id), the scored pairs at or
    above ``review`` probability, and what training and prediction took."""

    clusters: dict[str, str]
    pairs: pd.DataFrame
    threshold: float
    seconds: dict[str, float] = field(default_factory=dict)


def match(
    people: pd.DataFrame,
    *,
    threshold: float = 0.95,
    review: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> MatchResult:
    """Deduplicate ``people`` (from :func:`prepare_people`): train by EM, predict, cluster.

    Args:
        threshold: Match probability at or above which two records are linked.
        review: Pairs from here up to ``threshold`` are kept in ``pairs`` for review.
        progress: Called with the name of each step.
    """
    import time

    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    say = progress or (lambda _: None)
    columns = set(people.columns) - {"unique_id"}
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=_comparisons(columns),
        blocking_rules_to_generate_predictions=_blocking(columns),
        retain_intermediate_calculation_columns=False,
    )
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    db = DuckDBAPI()
    # Splink logs every level it cannot train (a column never disagreeing in the blocked pairs)
    # as a warning; the trained model still scores, and the figures show the result.
    linker = Linker(db.register(people), settings, log_level=logging.ERROR)
    say("estimating the match rate")
    deterministic: list[Any] = [
        block_on(*k)
        for k in (("id_number",), ("name", "birth_date"), ("surname", "given_name", "birth_date"))
        if set(k) <= columns
    ]
    if deterministic:
        linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.8)
    say("estimating u by random sampling")
    linker.training.estimate_u_using_random_sampling(max_pairs=1_000_000, seed=1)
    say("training m by expectation maximisation")
    for k in (("birth_date",), ("name_pinyin",), ("surname",), ("given_name",), ("phone",)):
        if set(k) <= columns:
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*k), fix_u_probabilities=True
            )
    seconds["train"] = time.perf_counter() - t
    say("scoring candidate pairs")
    t = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=review)
    clusters_sdf = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    frame = _pandas(clusters_sdf)
    pairs = _pandas(predictions)
    seconds["predict"] = time.perf_counter() - t
    members: dict[str, list[str]] = {}
    for uid, cid in zip(frame["unique_id"], frame["cluster_id"], strict=True):
        members.setdefault(str(cid), []).append(str(uid))
    clusters = {u: min(ms) for ms in members.values() for u in ms}
    keep = ["unique_id_l", "unique_id_r", "match_probability", "match_weight"]
    return MatchResult(clusters, pairs[keep], threshold, seconds)


@dataclass(frozen=True, slots=True)
class ClusterScores:
    """Pairwise confusion counts over all record pairs, and exact-cluster counts."""

    records: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    clusters_found: int
    clusters_true: int
    clusters_exact: int

    @staticmethod
    def _ratio(a: int, b: int) -> float:
        return a / b if b else 1.0

    @property
    def precision(self) -> float:
        return self._ratio(self.true_positives, self.true_positives + self.false_positives)

    @property
    def recall(self) -> float:
        return self._ratio(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def cluster_precision(self) -> float:
        """Share of found clusters (of 2 or more) that are exactly a true cluster."""
        return self._ratio(self.clusters_exact, self.clusters_found)

    @property
    def cluster_recall(self) -> float:
        """Share of true clusters (of 2 or more) found exactly."""
        return self._ratio(self.clusters_exact, self.clusters_true)


def _pairs(groups: Mapping[str, list[str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for ms in groups.values():
        s = sorted(ms)
        out.update((a, b) for i, a in enumerate(s) for b in s[i + 1 :])
    return out


def evaluate_clusters(found: Mapping[str, str], truth: Mapping[str, str]) -> ClusterScores:
    """Compare ``found`` (record → cluster) with ``truth`` (record → true entity) over the
    records both name."""
    common = sorted(set(found) & set(truth))
    by_found: dict[str, list[str]] = {}
    by_true: dict[str, list[str]] = {}
    for r in common:
        by_found.setdefault(found[r], []).append(r)
        by_true.setdefault(truth[r], []).append(r)
    fp_pairs, tp_pairs = _pairs(by_found), _pairs(by_true)
    tp = len(fp_pairs & tp_pairs)
    n = len(common)
    total = n * (n - 1) // 2
    fp, fn = len(fp_pairs) - tp, len(tp_pairs) - tp
    found_sets = {frozenset(ms) for ms in by_found.values() if len(ms) > 1}
    true_sets = {frozenset(ms) for ms in by_true.values() if len(ms) > 1}
    return ClusterScores(
        n, tp, fp, fn, total - tp - fp - fn, len(found_sets), len(true_sets),
        len(found_sets & true_sets),
    )  # fmt: skip
