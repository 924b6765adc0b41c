/*
name: chronic_summary
theme: chronic
description: >
  Per hospital and chronic condition: registered patients (seen for the condition in that
  hospital), those with the key indicator measured, those controlled, and the controlled share
  (controlled / measured, for indicators with a control target).
partition: {institution_code: VARCHAR}
uses_conditions: true
inputs:
  - name: registry
    from: (SELECT unnest(hospitals_seen) AS institution_code, * FROM ads.chronic_registry) reg
    key: [institution_code]
    hash: [person_id, condition_code, indicator_item, indicator_value, controlled]
*/
SELECT
    r.institution_code,
    r.condition_code,
    c.name_zh AS condition_name_zh,
    c.name_en AS condition_name_en,
    min(r.indicator_item) AS indicator_item,
    count(*) AS patients,
    count(r.indicator_value) AS with_indicator,
    count(*) FILTER (WHERE r.controlled) AS controlled,
    round(count(*) FILTER (WHERE r.controlled) / nullif(count(r.controlled), 0), 4)
        AS controlled_share
FROM {{registry}} r
JOIN ads.chronic_condition c ON c.code = r.condition_code
GROUP BY r.institution_code, r.condition_code, c.name_zh, c.name_en
