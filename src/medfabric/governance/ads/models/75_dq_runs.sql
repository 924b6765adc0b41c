/*
name: dq_runs
theme: quality
description: >
  Per governance run (gov.runs.started_at) × hospital × DWD table: the quarantined rows and
  removed duplicates that run found and that still stand (a row re-derived by a later run
  moves to that run). Values nulled and unmapped codes carry no time in gov and are in
  dq_current only.
partition: {run_at: TIMESTAMPTZ, hospital: VARCHAR, dwd_table: VARCHAR}
requires: [gov.quarantine, gov.duplicates, gov.runs]
inputs:
  - name: quarantine
    from: >
      (SELECT r.started_at AS run_at, q.* FROM gov.quarantine q
       ASOF LEFT JOIN gov.runs r ON q.quarantined_at >= r.started_at) q
    key: [run_at, hospital, dwd_table]
    hash: [source_system, source_table, source_key, quarantined_at]
  - name: duplicates
    from: >
      (SELECT r.started_at AS run_at, d.* FROM gov.duplicates d
       ASOF LEFT JOIN gov.runs r ON d.found_at >= r.started_at) d
    key: [run_at, hospital, dwd_table]
    hash: [source_system, source_table, source_key, found_at]
*/
SELECT
    run_at,
    hospital,
    dwd_table,
    count(*) FILTER (WHERE kind = 'q') AS quarantined,
    count(*) FILTER (WHERE kind = 'd') AS duplicates_removed
FROM (
    SELECT run_at, hospital, dwd_table, 'q' AS kind FROM {{quarantine}}
    UNION ALL
    SELECT run_at, hospital, dwd_table, 'd' FROM {{duplicates}}
)
GROUP BY ALL
