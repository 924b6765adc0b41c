"""ADS (主题层): themes and indicators as SQL models over DWD and ``gov``, refreshed
incrementally after each governance run (docs/ads.md).

Public surface: :func:`refresh_ads` (incremental, idempotent), :func:`headline` (a few figures
for the demo), :func:`theme_tables` (the tables of a theme, for the CLI),
:func:`load_conditions` (the chronic-conditions file) and :func:`models` (the model files).
"""

from medfabric.governance.ads.conditions import Condition, Conditions, Indicator, load_conditions
from medfabric.governance.ads.errors import AdsError
from medfabric.governance.ads.read import ThemeTable, headline, theme_tables
from medfabric.governance.ads.refresh import AdsReport, ModelResult, refresh_ads
from medfabric.governance.ads.spec import THEMES, Model, models

__all__ = [
    "THEMES",
    "AdsError",
    "AdsReport",
    "Condition",
    "Conditions",
    "Indicator",
    "Model",
    "ModelResult",
    "ThemeTable",
    "headline",
    "load_conditions",
    "models",
    "refresh_ads",
    "theme_tables",
]
