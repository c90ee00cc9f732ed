"""The Dash app (Dash Pages): a shell shared by every page, and one module a page in dashboard/pages/.

`create_app(settings)` wires everything (the live state in memory, map data, health, /api) onto one
Flask server. The shell carries the title bar (navigation, service lights, the stale banner, the
signed-in person, the clock); each page brings its own live refresh (see dashboard/pages/*).
Responses are gzip-compressed (flask-compress), and plotly's bundle is served from this server.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dash
from dash import Dash, Input, Output, dcc, html

from alerts.command import Answer
from alerts.dispatch import DispatchBook, Refused
from alerts.guard import Closed
from alerts.store import open_store
from core.settings import Settings
from dashboard import alertview, mapview, pages
from dashboard.actions import AlertActions
from dashboard.api import register_api
from dashboard.closeout import TeamsHolder, dispatch_args, register_closeout
from dashboard.geo import BaseLayers, MapData
from dashboard.health import Freshness, HealthChecker
from dashboard.live import Live
from dashboard.login import check_role, current_user
from dashboard.offline import register_offline_routes, register_plotly
from dashboard.scope import (
    ScopedMapData,
    ScopedShelfMarks,
    ScopedState,
    current_scope,
    register_scope_guard,
    scope_words,
    scoped_store,
)
from dashboard.security import register_security
from dashboard.shelfmark import ShelfMarks
from dashboard.state import LiveState
from dashboard.theme import DASH_PAGES_NAV, NAV, SCOPE_WORDS, install_page_head
from geodata.basemap import TileReader, basemap_path

log = logging.getLogger(__name__)

TITLE = "车城路街道 综合一张图"
HEALTH_MS = 3_000
DEFAULT_DUTY = "值班员"  # who signs an action when sign-in is not required (no accounts, no token)
NOT_OPERATOR = "无权操作：当前账号只能查看（查看员），派单、解除、归档、屏蔽须值班员或管理员"


class Dashboard:
    """Everything the callbacks and routes share, for one app."""

    def __init__(self, settings: Settings, live_mqtt: bool = True) -> None:
        self.settings = settings
        self.all_store = open_store(settings)  # SC_STORE_URL: the SQLite file or PostgreSQL
        self.all_mapdata = MapData(settings)
        self.actions = AlertActions(self.all_store, settings)
        self.teams = TeamsHolder(settings)  # the dispatch teams in force (alerts/teams.yaml or SC_*)
        self.all_shelf_marks = ShelfMarks(self.all_store)  # live life-safety shelves, for the console and the wall
        self.health = HealthChecker(settings)
        self.freshness = Freshness(settings.data_path, settings.dashboard_stale_s)
        self.all_state = LiveState(settings, self.all_mapdata, mqtt=live_mqtt)
        self.actions.listeners.append(self.all_state.apply)  # console buttons and /api alike
        self._influx: Any = None
        self.figures: dict[Any, Any] = {}  # the static map figure per (layers, registry, host, scope): mapview

    # What pages and callbacks read, as the person of the request may see it (dashboard/scope.py);
    # the whole street (`all_*`) for everyone without a scope.
    @property
    def store(self) -> Any:
        return scoped_store(self.all_store)

    @property
    def state(self) -> Any:
        scope = current_scope()
        return self.all_state if scope is None else ScopedState(self.all_state, scope)

    @property
    def mapdata(self) -> Any:
        scope = current_scope()
        return self.all_mapdata if scope is None else ScopedMapData(self.all_mapdata, scope)

    @property
    def shelf_marks(self) -> Any:
        scope = current_scope()
        return self.all_shelf_marks if scope is None else ScopedShelfMarks(self.all_shelf_marks, scope)

    @property
    def dispatches(self) -> DispatchBook:
        """Read here; the alerts service writes them."""
        return DispatchBook(self.store, self.settings)

    def snapshot(self) -> tuple[BaseLayers, Any, Live]:
        return self.state.view()

    def mapdata_changed(self, sig: dict[str, Any]) -> bool:
        return self.mapdata.layers().key != sig.get("base") or self.mapdata.registry_version() != sig.get("reg")

    def influx(self) -> Any:
        from core.influx import client_for

        if self._influx is None:  # the dashboard's own (read-only, when security is on) account
            self._influx = client_for(self.settings, timeout_s=8.0)
        return self._influx

    def signer(self) -> str:
        """Who an action is signed by: the signed-in account, else (sign-in not required) 值班员."""
        return current_user() or DEFAULT_DUTY

    def acknowledge(self, alert_id: str, note: str | None) -> Any:
        if not check_role("operator"):  # refused server-side, whatever the page shows (and audited)
            return Closed(None, 403, NOT_OPERATOR)
        return self.actions.acknowledge(alert_id, self.signer(), note, via="console")  # into the live state at once

    def resolve(self, alert_id: str, note: str | None, override: bool = False) -> Any:
        """Through the close guard (alerts/guard.py): refused while the danger is measured, unless
        `override` with a reason in `note`."""
        if not check_role("operator"):
            return Closed(None, 403, NOT_OPERATOR)
        return self.actions.resolve(alert_id, self.signer(), note, override=override, via="console")

    def command(self, name: str, **args: Any) -> Answer:
        """A console action (operator and above) as a command to the alerts service, audited with its
        outcome; a viewer is refused here (403, audited), whatever the page shows."""
        if not check_role("operator"):
            return Answer(403, {"error": NOT_OPERATOR})
        return self.actions.act(name, self.signer(), "console", **args)  # into the live state at once

    def dispatch(self, alert_id: str, team: str | None, member: str | None, minutes: Any,
                 note: str | None) -> Answer:
        """派单 from the console: the team, member and deadline checked as the /api checks them."""
        if not check_role("operator"):
            return Answer(403, {"error": NOT_OPERATOR})
        try:
            args = dispatch_args(self.teams, team, member, None, minutes, time.time())
        except Refused as exc:
            return Answer(exc.status, {"error": exc.message})
        return self.command("dispatch", alert_id=alert_id, note=note, **args)

    def close(self) -> None:
        self.health.sizes.close()
        self.all_state.close()
        self.all_store.close()
        if self._influx is not None:
            self._influx.close()


def shell() -> html.Div:
    nav = [dcc.Link(name, href=href, className="nav-link") if href in DASH_PAGES_NAV
           else html.A(name, href=href, className="nav-link") for name, href in NAV]
    nav += [dcc.Link(name, href=href, className="nav-link") for name, href in pages.page_nav(mapview.dctx().settings)]
    who = current_user()
    scope = current_scope()
    return html.Div(
        id="root",
        className="root",
        children=[
            dcc.Location(id="nav", refresh="callback-nav"),
            dcc.Interval(id="clock-tick", interval=1000),
            dcc.Interval(id="health-tick", interval=HEALTH_MS),
            html.Header(
                className="topbar",
                children=[
                    html.Div([html.H1(TITLE), html.Span("十堰市张湾区 · 城市安全运行监测", className="subtitle")],
                             className="title-block"),
                    html.Nav(nav, className="nav"),
                    html.Div(id="services", className="services"),
                    html.Div(id="stale", className="stale hidden", role="alert"),
                    # The signed-in person's name leads to their notification settings (/settings).
                    html.Div(dcc.Link(who, href="/settings", className="whoami-link") if who else "",
                             className="whoami", title="当前登录 · 通知设置"),
                    html.Div(scope_words(scope), className="whoami scope", title=SCOPE_WORDS["scope"])
                    if scope else None,
                    html.Div(html.Div(id="clock", className="clock"), className="clock-block"),
                ],
            ),
            html.Main(dash.page_container, className="page"),
        ],
    )


def create_app(settings: Settings, live_mqtt: bool = True) -> Dash:
    dctx = Dashboard(settings, live_mqtt=live_mqtt)
    app = Dash(
        __name__,
        title=TITLE,
        update_title=None,
        serve_locally=True,
        compress=True,  # flask-compress: gzip for the plotly bundle, the layout and every callback
        suppress_callback_exceptions=True,
        use_pages=True,
        pages_folder="",  # the pages are registered below from dashboard.pages, one module each
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"},
                   {"http-equiv": "content-language", "content": "zh-CN"}],
    )
    app.index_string = app.index_string.replace("<html>", '<html lang="zh-CN">')
    pages.register_pages(app, dctx)
    app.layout = shell
    install_page_head(app)  # severity colours as CSS variables, the clock's time zone
    register_offline_routes(app.server, TileReader(basemap_path(settings)))  # the street's own basemap, if any
    register_plotly(app)  # the partial plotly.js when built, preloaded by every page
    register_security(app, settings)  # sign-in, roles, headers, CSRF/Origin, JSON errors, audit
    register_scope_guard(app.server)  # a page of an alert, device or compound out of one's scope: 404
    register_api(app.server, settings, dctx.all_store, dctx.actions, dctx.health)
    # dispatch, field page, archive, report
    register_closeout(app.server, settings, dctx.all_store, dctx.actions, dctx.teams)
    app.server.config["SC_DASHBOARD"] = dctx
    app.server.config["COMPRESS_MIN_SIZE"] = 1024
    app.server.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.server.json.sort_keys = False  # type: ignore[attr-defined]
    register_callbacks(app, dctx)
    return app


def register_callbacks(app: Dash, dctx: Dashboard) -> None:
    app.clientside_callback(
        "function(p){ p = (p || '').replace(/\\/$/, ''); return p.endsWith('/wall') ? 'root wall' : "
        "(p === '' ? 'root home' : 'root sub'); }",
        Output("root", "className"),
        Input("_pages_location", "pathname"),
    )
    app.clientside_callback(
        "function(n){ return window.dash_clientside.sc.clock(n); }",
        Output("clock", "children"),
        Input("clock-tick", "n_intervals"),
    )

    @app.callback(
        Output("services", "children"),
        Output("stale", "className"),
        Output("stale", "children"),
        Input("health-tick", "n_intervals"),
    )
    def _health(_n: int) -> tuple[Any, str, str]:
        _ok, body = dctx.health.report()
        fresh = dctx.freshness.check()
        text = "数据未更新: " + "；".join(fresh["reasons"]) if fresh["stale"] else ""
        return alertview.service_bar(body), ("stale" if fresh["stale"] else "stale hidden"), text
