"""The dashboard's pages (Dash Pages), one module each.

Every module defines `PATH` (or `PATH_TEMPLATE`), `TITLE`, `layout(**kwargs)` (called per visit,
inside the request, so it may read `current_user()`), and `register(app, dashboard)` for its callbacks.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import dash

from dashboard import mapview
from dashboard.pages import alert, alerts, compound, device, home, wall

PAGES: tuple[ModuleType, ...] = (home, wall, alerts, alert, device, compound)


def register_pages(app: dash.Dash, dashboard: Any) -> None:
    mapview.register(app, dashboard)  # the map block shared by / and /wall
    for order, mod in enumerate(PAGES):
        kw: dict[str, Any] = {"path_template": mod.PATH_TEMPLATE} if hasattr(mod, "PATH_TEMPLATE") else {}
        dash.register_page(mod.__name__, path=getattr(mod, "PATH", None), name=mod.TITLE, title=mod.TITLE,
                           order=order, layout=mod.layout, **kw)
        mod.register(app, dashboard)
