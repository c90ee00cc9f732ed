"""The command-center dashboard: the one map (综合一张图), the on-call console and the JSON /api.

`create_app(settings)` (dashboard.app) builds the Dash app; `smartcommunity dashboard` serves it.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    # Lazy, so `import dashboard.cli` (run for every CLI verb) does not pull in Dash and geopandas.
    if name == "create_app":
        from dashboard.app import create_app

        return create_app
    raise AttributeError(name)
