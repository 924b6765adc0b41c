/*
name: exam_daily
theme: operations
description: >
  Exam reports per day (of reported_at) by hospital and modality (CT, MR, US …), with the
  requested → reported turnaround in minutes (median, 90th percentile; reports before their
  request are counted in negative_tat and left out).
partition: {institution_code: VARCHAR, report_date: DATE}
inputs:
  - name: exam_report
    from: dwd.exam_report
    key: [institution_code, CAST(reported_at AS DATE)]
    hash: [exam_report_id, modality, requested_at, reported_at]
*/
WITH e AS (
    SELECT
        institution_code,
        CAST(reported_at AS DATE) AS report_date,
        modality,
        date_diff('second', requested_at, reported_at) / 60.0 AS tat
    FROM {{exam_report}}
)
SELECT
    institution_code,
    report_date,
    modality,
    count(*) AS exams,
    round(median(tat) FILTER (WHERE tat >= 0), 1) AS tat_median_min,
    round(quantile_cont(tat, 0.9) FILTER (WHERE tat >= 0), 1) AS tat_p90_min,
    count(*) FILTER (WHERE tat < 0) AS negative_tat
FROM e
GROUP BY ALL
