"""HTML for the console: the unresolved-alert list, per-community counters, the service bar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import html

from core.contract import COMMUNITIES, Alert
from core.severity import SEVERITIES
from core.timebase import local_time
from dashboard.geo import BaseLayers
from dashboard.live import Live
from dashboard.theme import KIND_LABEL, SEVERITY_COLOR, STATE_LABEL, severity_label

MAX_ITEMS = 200  # more would not be read on a wall; the API lists them all


def _compound_name(a: Alert, base: BaseLayers) -> str:
    place = base.places.get(a.compound_id or "")
    return place.name if place else (a.compound_id or "")


def alert_item(a: Alert, base: BaseLayers, console: bool) -> html.Li:
    colour = SEVERITY_COLOR.get(a.severity, "#888")
    meta = [f"{a.device_id or '-'}", KIND_LABEL.get(a.kind, a.kind or ""), STATE_LABEL.get(a.state, a.state)]
    if a.acked_by:
        meta.append(f"确认人 {a.acked_by}")
    children: list[Any] = [
        html.Div(
            className="alert-head",
            children=[
                html.Span(severity_label(a.severity), className="sev-badge", style={"backgroundColor": colour}),
                html.Span(COMMUNITIES.get(a.community, a.community), className="alert-community"),
                html.Span(_compound_name(a, base), className="alert-compound"),
                html.Span(local_time(a.started_at), className="alert-time", title=a.started_at),
            ],
        ),
        html.Div(a.message or a.rule, className="alert-message"),
        html.Div(" · ".join(m for m in meta if m), className="alert-meta"),
    ]
    if console:
        buttons = [
            html.Button(
                "解除",
                id={"type": "resolve-btn", "index": a.alert_id},
                className="btn btn-resolve",
                n_clicks=0,
                title="处置完毕，解除告警",
            )
        ]
        if a.state == "active":
            buttons.insert(
                0,
                html.Button(
                    "确认",
                    id={"type": "ack-btn", "index": a.alert_id},
                    n_clicks=0,
                    className="btn btn-ack",
                    title="确认接警",
                ),
            )
        children.append(html.Div(buttons, className="alert-actions"))
    cls = f"alert-item sev-{a.severity} state-{a.state}"
    return html.Li(
        children, className=cls, id={"type": "alert-item", "index": a.alert_id}, style={"borderLeftColor": colour}
    )


def alert_list(live: Live, base: BaseLayers, console: bool) -> list[Any]:
    if not live.alerts:
        return [html.Li("当前无未解除告警", className="alert-empty")]
    items: list[Any] = [alert_item(a, base, console) for a in live.alerts[:MAX_ITEMS]]
    if len(live.alerts) > MAX_ITEMS:
        items.append(html.Li(f"另有 {len(live.alerts) - MAX_ITEMS} 条，见 /api/alerts", className="alert-empty"))
    return items


def counters(counts: Mapping[str, Mapping[str, int]], live: Live) -> list[Any]:
    total_active = sum(1 for a in live.alerts if a.state == "active")
    total_ack = len(live.alerts) - total_active
    cards: list[Any] = [
        html.Div(
            className="totals",
            children=[
                html.Div([html.Div(str(total_active), className="big num-active"), html.Div("未处置")]),
                html.Div([html.Div(str(total_ack), className="big"), html.Div("已确认")]),
                html.Div(
                    [
                        html.Div(str(sum(c.get("devices", 0) for c in counts.values())), className="big"),
                        html.Div("在册设备"),
                    ]
                ),
            ],
        )
    ]
    for slug, name in COMMUNITIES.items():
        c = counts.get(slug, {})
        sev = [
            html.Span(
                str(c.get(s, 0)),
                className="sev-count" + (" zero" if not c.get(s) else ""),
                style={"color": SEVERITY_COLOR[s]},
                title=f"{severity_label(s)}告警",
            )
            for s in SEVERITIES
        ]
        worst = next((s for s in SEVERITIES if c.get(s)), None)
        cards.append(
            html.Div(
                className="community-card",
                style={"borderTopColor": SEVERITY_COLOR[worst] if worst else "#2b3d57"},
                children=[
                    html.Div(name, className="community-name"),
                    html.Div(sev, className="sev-counts"),
                    html.Div(
                        f"设备 {c.get('devices', 0)} · 告警设备 {c.get('alerting', 0)}", className="community-meta"
                    ),
                ],
            )
        )
    return cards


PART_LABEL = {"mqtt": "消息总线", "influxdb": "时序库", "ingest": "接入", "alerts": "告警引擎"}


def service_bar(body: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for part, label in PART_LABEL.items():
        ok = body.get(part) == "ok"
        err = (body.get("details", {}).get(part) or {}).get("error", "")
        out.append(
            html.Span(
                [html.Span(className="dot"), label],
                className="svc " + ("ok" if ok else "down"),
                title="正常" if ok else f"异常: {err}",
            )
        )
    return out
