"""The dashboard's pages (Dash Pages), one module each.

Every module defines `PATH` (or `PATH_TEMPLATE`), `TITLE`, `ORDER` (its place in the page list),
`layout(**kwargs)` (called per visit, inside the request, so it may read `current_user()`), and
`register(app, dashboard)` for its callbacks. A new page is a new module here: it is found by its
`TITLE`, no list to edit.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import dash

import dashboard.pages
from core.plugins import modules_in
from dashboard import mapview


def pages() -> list[ModuleType]:
    return modules_in(dashboard.pages, having="TITLE")


def register_pages(app: dash.Dash, dashboard: Any) -> None:
    mapview.register(app, dashboard)  # the map block shared by / and /wall
    for order, mod in enumerate(pages()):
        kw: dict[str, Any] = {"path_template": mod.PATH_TEMPLATE} if hasattr(mod, "PATH_TEMPLATE") else {}
        dash.register_page(mod.__name__, path=getattr(mod, "PATH", None), name=mod.TITLE, title=mod.TITLE,
                           order=order, layout=mod.layout, **kw)
        mod.register(app, dashboard)
