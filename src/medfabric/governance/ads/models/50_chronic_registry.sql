/*
name: chronic_registry
theme: chronic
description: >
  One row per person and chronic condition (conditions file): first diagnosis (diagnosed_at,
  else the visit's visit_at), number of diagnoses, hospitals seen, and the latest value of the
  condition's key indicator (the first listed) with its date (collected_at, else reported_at of
  the lab report) and whether it is controlled; `indicators` lists the latest value of every
  indicator of the condition. Lab results are fingerprinted only for persons with a chronic
  diagnosis: a result of anyone else changes nothing here. Until the EMPI issue lands a person is one hospital's patient
  (person_id is the hospital's patient address).
partition: {person_id: VARCHAR}
uses_conditions: true
inputs:
  # a diagnosis without its own time takes its visit's: a change of the visit reaches it
  - name: diagnosis
    from: (SELECT d.*, v.visit_at FROM dwd.diagnosis d
           LEFT JOIN dwd.visit v ON v.visit_id = d.visit_id) dv
    where: left(diagnosis_code, 3) IN (SELECT category FROM ads.chronic_condition_category)
    key: [person_id]
    hash: [diagnosis_id, diagnosis_code, diagnosed_at, institution_code, visit_id, visit_at]
    yields: person_id, diagnosis_code, institution_code, diagnosed_at, visit_at
    materialize: true
  # a result's time is its report's, so a change of the report reaches the result's person;
  # the rows (a few % of lab_result) are kept for the body: one scan of lab_result per refresh
  - name: lab_result
    from: (SELECT x.*, r.collected_at, r.reported_at FROM dwd.lab_result x
           LEFT JOIN dwd.lab_report r ON r.lab_report_id = x.lab_report_id) xr
    where: >
      item_code IN (SELECT item_code FROM ads.chronic_indicator)
      AND value_numeric IS NOT NULL
      AND person_id IN (
        SELECT person_id FROM dwd.diagnosis
        WHERE left(diagnosis_code, 3) IN (SELECT category FROM ads.chronic_condition_category))
    key: [person_id]
    hash: [lab_result_id, lab_report_id, item_code, value_numeric, unit, collected_at,
           reported_at]
    yields: person_id, lab_result_id, lab_report_id, item_code, value_numeric, unit,
            collected_at, reported_at      # only what the body reads: kept per refresh
    materialize: true
*/
WITH dx AS (
    SELECT
        d.person_id,
        c.condition_code,
        d.institution_code,
        coalesce(d.diagnosed_at, d.visit_at) AS diagnosed_at
    FROM {{diagnosis}} d
    JOIN ads.chronic_condition_category c ON c.category = left(d.diagnosis_code, 3)
),
cases AS (
    SELECT
        person_id,
        condition_code,
        min(diagnosed_at) AS first_diagnosed_at,
        count(*) AS diagnoses,
        list_sort(list_distinct(list(institution_code))) AS hospitals_seen
    FROM dx
    GROUP BY ALL
),
latest AS (
    SELECT
        x.person_id,
        x.item_code,
        x.value_numeric,
        x.unit,
        coalesce(x.collected_at, x.reported_at) AS measured_at
    FROM {{lab_result}} x
    QUALIFY row_number() OVER (
        PARTITION BY x.person_id, x.item_code
        ORDER BY coalesce(x.collected_at, x.reported_at) DESC NULLS LAST, x.lab_result_id DESC
    ) = 1
),
measured AS (
    SELECT
        c.person_id,
        c.condition_code,
        i.rank,
        i.item_code,
        l.value_numeric AS value,
        l.unit,
        l.measured_at,
        CASE
            WHEN l.value_numeric IS NULL THEN NULL
            WHEN i.controlled_below IS NOT NULL THEN l.value_numeric < i.controlled_below
            WHEN i.controlled_at_least IS NOT NULL THEN l.value_numeric >= i.controlled_at_least
        END AS controlled
    FROM cases c
    JOIN ads.chronic_indicator i ON i.condition_code = c.condition_code
    LEFT JOIN latest l ON l.person_id = c.person_id AND l.item_code = i.item_code
),
all_indicators AS (
    SELECT
        person_id,
        condition_code,
        list(
            struct_pack(item := item_code, value := value, unit := unit,
                        measured_at := measured_at, controlled := controlled)
            ORDER BY rank
        ) FILTER (WHERE value IS NOT NULL) AS indicators
    FROM measured
    GROUP BY ALL
)
SELECT
    c.person_id,
    c.condition_code,
    c.first_diagnosed_at,
    c.diagnoses,
    c.hospitals_seen,
    k.item_code AS indicator_item,
    k.value AS indicator_value,
    k.unit AS indicator_unit,
    k.measured_at AS indicator_at,
    k.controlled,
    a.indicators
FROM cases c
LEFT JOIN measured k
    ON k.person_id = c.person_id AND k.condition_code = c.condition_code AND k.rank = 1
LEFT JOIN all_indicators a
    ON a.person_id = c.person_id AND a.condition_code = c.condition_code
