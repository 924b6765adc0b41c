"""Data quality in the Kahn framework (OHDSI DataQualityDashboard): conformance, completeness,
plausibility, plus uniqueness and timeliness, per hospital × DWD table × check.

Checks are generated from the DWD model (``checks.model_checks``) and from the rules file
``standards/data/quality_rules.yaml`` (``rules.load_rules``); ``runner.run_quality`` runs them as
set-based SQL and stores schema ``dq``; ``scores`` computes DQD-style scores and their trend;
``report`` renders JSON and HTML; ``evaluate`` measures recall and precision against the
simulator's injected defects. See docs/quality.md.
"""
