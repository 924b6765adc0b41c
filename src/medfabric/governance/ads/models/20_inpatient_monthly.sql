/*
name: inpatient_monthly
theme: operations
description: >
  Discharges per month (of discharged_at) by hospital and department, with the length of stay
  (length_of_stay_days, else discharge date − admission date, a same-day stay counting 1 day;
  negative stays left out of the average and counted apart) and bed turnover (discharges per
  open bed in the month: dwd.department.open_beds per department; for the hospital row
  dwd.institution.approved_beds, else the sum of its departments' open beds). One row per
  department (level 'department') and one per hospital (level 'hospital', department NULL).
partition: {institution_code: VARCHAR}
inputs:
  - name: stay
    from: dwd.visit
    where: discharged_at IS NOT NULL
    key: [institution_code]
    hash: [visit_id, department_code, standard_department_code, admitted_at, discharged_at,
           length_of_stay_days]
  - name: department
    from: dwd.department
    key: [institution_code]
    hash: [department_code, open_beds]
  - name: institution
    from: dwd.institution
    key: [institution_code]
    hash: [approved_beds]
*/
WITH stays AS (
    SELECT
        institution_code,
        CAST(date_trunc('month', discharged_at) AS DATE) AS month,
        department_code,
        standard_department_code,
        coalesce(
            length_of_stay_days,
            CASE
                WHEN admitted_at IS NULL THEN NULL
                WHEN CAST(discharged_at AS DATE) < CAST(admitted_at AS DATE) THEN -1
                ELSE greatest(date_diff('day', CAST(admitted_at AS DATE),
                                        CAST(discharged_at AS DATE)), 1)
            END
        ) AS los
    FROM {{stay}}
),
grouped AS (
    SELECT
        institution_code,
        month,
        CASE WHEN grouping(department_code) = 0 THEN 'department' ELSE 'hospital' END AS level,
        department_code,
        standard_department_code,
        count(*) AS discharges,
        count(los) FILTER (WHERE los >= 0) AS stays_measured,
        CAST(coalesce(sum(los) FILTER (WHERE los >= 0), 0) AS BIGINT) AS los_days_total,
        count(*) FILTER (WHERE los < 0) AS negative_stays,
        count(*) FILTER (WHERE los IS NULL) AS los_unknown
    FROM stays
    GROUP BY GROUPING SETS (
        (institution_code, month, department_code, standard_department_code),
        (institution_code, month)
    )
),
dept_beds AS (
    SELECT institution_code, department_code, open_beds
    FROM {{department}}
    WHERE open_beds > 0
),
hospital_beds AS (
    SELECT
        h.institution_code,
        coalesce(max(i.approved_beds), max(h.beds)) AS beds,
        CASE
            WHEN max(i.approved_beds) IS NOT NULL THEN 'dwd.institution.approved_beds'
            WHEN max(h.beds) IS NOT NULL THEN 'sum of dwd.department.open_beds'
        END AS beds_source
    FROM (
        SELECT institution_code, CAST(sum(open_beds) AS BIGINT) AS beds FROM dept_beds GROUP BY ALL
        UNION ALL
        SELECT DISTINCT institution_code, NULL FROM stays
    ) h
    LEFT JOIN (
        SELECT institution_code, approved_beds FROM {{institution}} WHERE approved_beds > 0
    ) i USING (institution_code)
    GROUP BY ALL
)
SELECT
    g.institution_code,
    g.month,
    g.level,
    g.department_code,
    g.standard_department_code,
    g.discharges,
    g.stays_measured,
    g.los_days_total,
    round(g.los_days_total / nullif(g.stays_measured, 0), 2) AS avg_los_days,
    g.negative_stays,
    g.los_unknown,
    CASE WHEN g.level = 'hospital' THEN hb.beds ELSE db.open_beds END AS beds,
    round(g.discharges / nullif(CASE WHEN g.level = 'hospital' THEN hb.beds ELSE db.open_beds END,
                                0), 3) AS bed_turnover,
    coalesce(
        CASE WHEN g.level = 'hospital' THEN hb.beds_source
             WHEN db.open_beds IS NOT NULL THEN 'dwd.department.open_beds' END,
        'not available'
    ) AS beds_source
FROM grouped g
LEFT JOIN dept_beds db
    ON g.level = 'department'
    AND db.institution_code = g.institution_code
    AND db.department_code = g.department_code
LEFT JOIN hospital_beds hb
    ON g.level = 'hospital' AND hb.institution_code = g.institution_code
