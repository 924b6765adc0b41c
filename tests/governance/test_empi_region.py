"""The probabilistic matcher on a simulated region's governed person records, scored against
the simulator's ground truth (which local patient is which person): the issue's targets,
precision ≥ 0.995 and F1 ≥ 0.99."""

from __future__ import annotations

import csv

from tests.governance.regionkit import GovernedRegion

from medfabric.empi.model import evaluate_clusters, match, prepare_people
from medfabric.warehouse import DuckDBEngine

ROLES = {"name": "name", "sex": "sex_code", "birth_date": "birth_date",
         "id_type": "id_doc_type_code", "id_number": "id_doc_no", "phone": "phone",
         "address": "address_text"}  # fmt: skip


def test_the_region_s_people_are_matched_to_the_targets(
    governed: GovernedRegion, engine: DuckDBEngine
) -> None:
    frame = engine.fetch_arrow(
        "SELECT person_id, name, sex_code, CAST(birth_date AS VARCHAR) AS birth_date, "
        "id_doc_type_code, id_doc_no, phone, address_text FROM dwd.person"
    ).to_pandas()
    frame = frame.astype(object).where(frame.notna(), None)
    with (governed.root / "truth" / "patients.csv").open(encoding="utf-8") as f:
        local = {(r["hospital"], r["local_patient_id"]): r["person_id"] for r in csv.DictReader(f)}
    truth = {pid: local[(pid.split("/")[0], pid.split("/")[-1])] for pid in frame["person_id"]}
    assert len(set(truth.values())) < len(truth)  # people seen in more than one hospital
    result = match(prepare_people(frame, ROLES, id_column="person_id"))
    s = evaluate_clusters(result.clusters, truth)
    assert s.records == len(frame)
    assert s.precision >= 0.995 and s.f1 >= 0.99, (s.precision, s.recall, s.f1)
