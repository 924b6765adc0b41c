"""One governance pass, in the order its steps depend on each other:

1. ODS → DWD (:class:`~medfabric.governance.run.Governor`): only batches not processed yet;
2. master data (:func:`~medfabric.governance.master.refresh_master`): institutions from
   ``region.toml`` into ``dwd.institution`` and ``mdm``, departments, staff;
3. data quality (:func:`~medfabric.governance.quality.run_quality`): every check over DWD and
   what governance set aside, stored as one more run in ``dq`` — skipped when neither step 1
   nor step 2 changed anything and a run already exists, so the trend has one point per change;
4. ADS (:func:`~medfabric.governance.ads.refresh.refresh_ads`): the partitions of each theme
   whose input changed (the quality theme reads step 3's results).

``medfabric govern run`` and the demo call :func:`govern`; the steps stay callable alone
(``medfabric quality run``, ``medfabric ads refresh``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medfabric.governance.ads.refresh import AdsReport, refresh_ads
from medfabric.governance.master import MasterReport, refresh_master
from medfabric.governance.quality import QualityRun, run_quality
from medfabric.governance.quality.scores import latest_run
from medfabric.governance.run import Governor, HospitalSource, RunReport
from medfabric.settings import Settings
from medfabric.warehouse.engine import Engine

__all__ = ["GovernReport", "govern"]


@dataclass(frozen=True, slots=True)
class GovernReport:
    """What each step of a pass did; ``quality`` is None when it was skipped (no change)."""

    run: RunReport
    master: MasterReport
    quality: QualityRun | None
    ads: AdsReport


def govern(
    engine: Engine,
    settings: Settings,
    sources: Sequence[HospitalSource],
    *,
    progress: Callable[[int, int, str], None] | None = None,
    step: Callable[[str], None] | None = None,
) -> GovernReport:
    """Run the four steps (module docstring) on the warehouse ``engine``.

    Args:
        progress: Called per mapping entry and hospital of step 1, for a progress bar.
        step: Called with the name of each step as it starts.
    """
    announce = step or (lambda _: None)
    announce("ODS → DWD")
    run = Governor(engine, progress=progress).run(sources)
    announce("master data")
    master = refresh_master(engine, settings)
    quality = None
    if any(e.batches for e in run.entries) or master.changed or latest_run(engine) is None:
        announce("data quality")
        quality = run_quality(engine)
    announce("ADS themes")
    ads = refresh_ads(engine)
    return GovernReport(run, master, quality, ads)
