"""`/alerts`: every alert, filtered by community, severity, state, rule and time; each row links
to its page. Read from the alert store on a filter change (not on a timer)."""

from __future__ import annotations

import time
from typing import Any

import flask
from dash import Dash, Input, Output, dcc, html

from alerts.rules import rules_in_force, title_of
from core.contract import COMMUNITIES, AlertState
from core.severity import COLOUR, SEVERITIES
from core.timebase import iso, local_time
from dashboard import mapview
from dashboard.theme import KIND_LABEL, STATE_LABEL, severity_label

PATH = "/alerts"
ORDER = 30  # place in the page list
TITLE = "告警列表 · 车城路街道 综合一张图"
LIMIT = 500
SINCE: dict[str, tuple[str, int]] = {"1h": ("1 小时", 3600), "24h": ("24 小时", 86400), "7d": ("7 天", 7 * 86400),
                                     "30d": ("30 天", 30 * 86400), "all": ("全部", 0)}


def rule_options() -> list[dict[str, str]]:
    """The filter's rules by title, in the rules file's order (the contract's first); the value
    stays the rule's name, as the store keeps it."""
    path = mapview.dctx().settings.alerts_rules_file if flask.has_app_context() else None
    return [{"label": r.label, "value": r.name} for r in rules_in_force(path).values()]  # the file's order


def rows(d: Any, community: str | None, severity: list[str], state: list[str], rule: str | None,
         since: str) -> list[Any]:
    secs = SINCE.get(since, SINCE["24h"])[1]
    got = d.store.list(
        state=",".join(state) or None, community=community or None, limit=LIMIT,
        severity=",".join(severity) or None, rule=rule or None,
        since=iso(time.time() - secs) if secs else None,
    )
    base = d.mapdata.layers()
    out: list[Any] = []
    for a in got:
        place = base.places.get(a.compound_id or "")
        out.append(html.Tr(
            [
                html.Td(html.Span(severity_label(a.severity), className="sev-badge",
                                  style={"backgroundColor": COLOUR.get(a.severity, "#888")})),
                html.Td(STATE_LABEL.get(a.state, a.state), className=f"st st-{a.state}"),
                html.Td(local_time(a.started_at)),
                html.Td(COMMUNITIES.get(a.community, a.community)),
                html.Td(place.name if place else a.compound_id),
                html.Td(KIND_LABEL.get(a.kind, a.kind)),
                html.Td(dcc.Link(a.message or title_of(a.rule), href=f"/alerts/{a.alert_id}")),
                html.Td(a.acked_by or ""),
            ],
            className=f"row-{a.state}",
        ))
    return out


def layout(**_kw: Any) -> html.Div:
    states = [str(s) for s in AlertState]
    return html.Div(
        className="sub-page",
        children=[
            html.H2("告警列表"),
            html.Div(
                className="filters",
                children=[
                    dcc.Dropdown(id="f-community", options=[{"label": v, "value": k} for k, v in COMMUNITIES.items()],
                                 placeholder="全部社区", className="f-drop", searchable=False),
                    dcc.Checklist(id="f-severity", options=[{"label": severity_label(s), "value": s}
                                                            for s in SEVERITIES],
                                  value=[], className="f-checks", inline=True),
                    dcc.Checklist(id="f-state", options=[{"label": STATE_LABEL.get(s, s), "value": s} for s in states],
                                  value=[], className="f-checks", inline=True),
                    dcc.Dropdown(id="f-rule", options=rule_options(),
                                 placeholder="全部规则", className="f-drop", searchable=False),
                    dcc.RadioItems(id="f-since", options=[{"label": v[0], "value": k} for k, v in SINCE.items()],
                                   value="24h", className="f-checks", inline=True),
                ],
            ),
            html.Div(id="f-count", className="muted"),
            html.Table(
                [html.Thead(html.Tr([html.Th(h) for h in ("级别", "状态", "时间", "社区", "小区", "类别", "内容",
                                                          "确认人")])),
                 html.Tbody(id="alert-rows")],
                className="table alert-table",
            ),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("alert-rows", "children"),
        Output("f-count", "children"),
        Input("f-community", "value"),
        Input("f-severity", "value"),
        Input("f-state", "value"),
        Input("f-rule", "value"),
        Input("f-since", "value"),
    )
    def _filter(community: str | None, severity: list[str] | None, state: list[str] | None, rule: str | None,
                since: str | None) -> tuple[list[Any], str]:
        got = rows(mapview.dctx(), community, severity or [], state or [], rule, since or "24h")
        more = f"（仅显示最新 {LIMIT} 条）" if len(got) >= LIMIT else ""
        return got, f"共 {len(got)} 条{more}"
