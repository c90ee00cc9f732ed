"""The dashboard's pages (Dash Pages), one module each.

Every module defines `PATH` (or `PATH_TEMPLATE`), `TITLE`, `ORDER` (its place in the page list),
`layout(**kwargs)` (called per visit, inside the request, so it may read `current_user()`), and
`register(app, dashboard)` for its callbacks. A new page is a new module here: it is found by its
`TITLE`, no list to edit. Optionally `shown(settings)`: the page exists only where it says so (the
demo's inbox), and `NAV_LABEL`: it is in the title bar's navigation, after the fixed entries.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import dash

import dashboard.pages
from core.plugins import modules_in
from dashboard import mapview


def pages(settings: Any = None) -> list[ModuleType]:
    """The page modules; with `settings`, only those shown under them."""
    found = modules_in(dashboard.pages, having="TITLE")
    if settings is None:
        return found
    return [m for m in found if not hasattr(m, "shown") or m.shown(settings)]


def page_nav(settings: Any) -> list[tuple[str, str]]:
    """(label, path) of the shown pages that put themselves in the navigation."""
    return [(m.NAV_LABEL, m.PATH) for m in pages(settings) if hasattr(m, "NAV_LABEL")]


def register_pages(app: dash.Dash, dashboard: Any) -> None:
    mapview.register(app, dashboard)  # the map block shared by / and /wall
    shown = pages(dashboard.settings)
    for mod in pages():
        if mod not in shown:  # Dash's page registry is per process: an earlier app's page must not linger
            dash.page_registry.pop(mod.__name__, None)
    for order, mod in enumerate(shown):
        kw: dict[str, Any] = {"path_template": mod.PATH_TEMPLATE} if hasattr(mod, "PATH_TEMPLATE") else {}
        dash.register_page(mod.__name__, path=getattr(mod, "PATH", None), name=mod.TITLE, title=mod.TITLE,
                           order=order, layout=mod.layout, **kw)
        mod.register(app, dashboard)
