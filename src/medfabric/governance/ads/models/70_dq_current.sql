/*
name: dq_current
theme: quality
description: >
  Standing governance findings per hospital and DWD table, as of the latest governance run:
  rows in quarantine, duplicates removed, values nulled (gov.value_issues), rows with an
  unmapped code (gov.unmapped_rows) and the distinct unmapped codes (domain:code).
partition: {hospital: VARCHAR, dwd_table: VARCHAR}
requires: [gov.quarantine, gov.duplicates, gov.value_issues, gov.unmapped_rows]
inputs:
  - name: quarantine
    from: gov.quarantine
    key: [hospital, dwd_table]
    hash: [source_system, source_table, source_key]
  - name: duplicates
    from: gov.duplicates
    key: [hospital, dwd_table]
    hash: [source_system, source_table, source_key]
  - name: value_issues
    from: gov.value_issues
    key: [hospital, dwd_table]
    hash: [source_system, source_table, source_key, reason]
  - name: unmapped
    from: gov.unmapped_rows
    key: [hospital, dwd_table]
    hash: [source_system, source_table, source_key, domain, code]
*/
SELECT
    hospital,
    dwd_table,
    count(*) FILTER (WHERE kind = 'q') AS quarantined,
    count(*) FILTER (WHERE kind = 'd') AS duplicates_removed,
    count(*) FILTER (WHERE kind = 'v') AS values_nulled,
    count(*) FILTER (WHERE kind = 'u') AS unmapped_rows,
    count(DISTINCT code) AS unmapped_codes
FROM (
    SELECT hospital, dwd_table, 'q' AS kind, NULL AS code FROM {{quarantine}}
    UNION ALL
    SELECT hospital, dwd_table, 'd', NULL FROM {{duplicates}}
    UNION ALL
    SELECT hospital, dwd_table, 'v', NULL FROM {{value_issues}}
    UNION ALL
    SELECT hospital, dwd_table, 'u', domain || ':' || code FROM {{unmapped}}
)
GROUP BY ALL
