"""Data quality in the Kahn framework (OHDSI DataQualityDashboard): conformance, completeness,
plausibility, plus uniqueness and timeliness, per hospital × DWD table × check.

Checks are generated from the DWD model (``checks.model_checks``) and from the rules file
``standards/data/quality_rules.yaml`` (``rules.load_rules``); ``runner.run_quality`` runs them as
set-based SQL and stores schema ``dq``; ``scores`` computes DQD-style scores and their trend;
``report`` renders JSON and HTML; ``evaluate`` measures recall and precision against the
simulator's injected defects. See docs/quality.md.
"""

from medfabric.governance.quality.checks import Check, generate_checks, model_checks, rule_checks
from medfabric.governance.quality.evaluate import DefectScore, TruthError, evaluate
from medfabric.governance.quality.report import (
    ReportError,
    render_html,
    render_json,
    report_data,
)
from medfabric.governance.quality.rules import Rule, RulesError, RuleSet, load_rules
from medfabric.governance.quality.runner import CheckResult, QualityRun, run_quality
from medfabric.governance.quality.scores import Score, scores, trend

__all__ = [
    "Check",
    "CheckResult",
    "DefectScore",
    "QualityRun",
    "ReportError",
    "Rule",
    "RuleSet",
    "RulesError",
    "Score",
    "TruthError",
    "evaluate",
    "generate_checks",
    "load_rules",
    "model_checks",
    "render_html",
    "render_json",
    "report_data",
    "rule_checks",
    "run_quality",
    "scores",
    "trend",
]
