/*
name: dq_checks
theme: quality
description: >
  Data-quality checks (dq.results, when that schema exists) per run × hospital × DWD table and
  category (category NULL: all categories): checks passed and failed (status pass/passed/ok and
  fail/failed; other statuses are neither), rows checked and failed, and the score
  passed / (passed + failed).
partition: {run_id: VARCHAR, hospital: VARCHAR, dwd_table: VARCHAR}
requires: [dq.results]
inputs:
  - name: results
    from: dq.results
    key: [CAST(run_id AS VARCHAR), hospital, dwd_table]
    hash: [check_id, category, subcategory, status, rows_checked, rows_failed, threshold, run_at]
*/
WITH r AS (
    SELECT
        CAST(run_id AS VARCHAR) AS run_id,
        run_at,
        hospital,
        dwd_table,
        category,
        lower(status) IN ('pass', 'passed', 'ok') AS passed,
        lower(status) IN ('fail', 'failed') AS failed,
        rows_checked,
        rows_failed
    FROM {{results}}
)
SELECT
    run_id,
    max(run_at) AS run_at,
    hospital,
    dwd_table,
    CASE WHEN grouping(category) = 1 THEN '*' ELSE category END AS category,
    count(*) FILTER (WHERE passed) AS checks_passed,
    count(*) FILTER (WHERE failed) AS checks_failed,
    CAST(sum(rows_checked) AS BIGINT) AS rows_checked,
    CAST(sum(rows_failed) AS BIGINT) AS rows_failed,
    round(count(*) FILTER (WHERE passed)
          / nullif(count(*) FILTER (WHERE passed OR failed), 0), 4) AS score
FROM r
GROUP BY GROUPING SETS ((run_id, hospital, dwd_table, category), (run_id, hospital, dwd_table))
