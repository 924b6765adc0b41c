/*
name: lab_daily
theme: operations
description: >
  Lab reports (requests) per day (of reported_at) by hospital and panel, with turnaround
  times in minutes — requested → reported and collected → reported, median and 90th
  percentile over the reports whose times are both known and in order (a report before its
  request or collection is counted in negative_tat and left out).
partition: {institution_code: VARCHAR, report_date: DATE}
inputs:
  - name: lab_report
    from: dwd.lab_report
    key: [institution_code, CAST(reported_at AS DATE)]
    hash: [lab_report_id, panel_code, panel_name, requested_at, collected_at, reported_at]
*/
WITH r AS (
    SELECT
        lab_report_id,
        institution_code,
        CAST(reported_at AS DATE) AS report_date,
        panel_code,
        panel_name,
        date_diff('second', requested_at, reported_at) / 60.0 AS tat_requested,
        date_diff('second', collected_at, reported_at) / 60.0 AS tat_collected
    FROM {{lab_report}}
)
SELECT
    r.institution_code,
    r.report_date,
    r.panel_code,
    min(r.panel_name) AS panel_name,
    count(*) AS reports,
    round(median(tat_requested) FILTER (WHERE tat_requested >= 0), 1) AS tat_requested_median_min,
    round(quantile_cont(tat_requested, 0.9) FILTER (WHERE tat_requested >= 0), 1)
        AS tat_requested_p90_min,
    round(median(tat_collected) FILTER (WHERE tat_collected >= 0), 1) AS tat_collected_median_min,
    round(quantile_cont(tat_collected, 0.9) FILTER (WHERE tat_collected >= 0), 1)
        AS tat_collected_p90_min,
    count(*) FILTER (WHERE tat_requested < 0 OR tat_collected < 0) AS negative_tat
FROM r
GROUP BY r.institution_code, r.report_date, r.panel_code
