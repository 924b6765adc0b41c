/*
name: visits_daily
theme: operations
description: >
  Visits per day (date of visit_at) by hospital, department (local and standard code) and
  visit type (1 outpatient, 2 emergency, 3 inpatient …), with distinct patients.
partition: {institution_code: VARCHAR, visit_date: DATE}
inputs:
  - name: visit
    from: dwd.visit
    key: [institution_code, CAST(visit_at AS DATE)]
    hash: [visit_id, person_id, department_code, standard_department_code, visit_type_code]
*/
SELECT
    institution_code,
    CAST(visit_at AS DATE) AS visit_date,
    department_code,
    standard_department_code,
    visit_type_code,
    count(*) AS visits,
    count(DISTINCT person_id) AS patients
FROM {{visit}}
GROUP BY ALL
