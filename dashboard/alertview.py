"""HTML for the console: the unresolved-alert list, per-community counters, the service bar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import dcc, html

from alerts import inhibit
from alerts.rules import title_of
from core.contract import COMMUNITIES, Alert
from core.severity import SEVERITIES, SHORT
from core.timebase import local_time
from dashboard.geo import BaseLayers
from dashboard.live import Live
from dashboard.scope import communities_seen
from dashboard.theme import (
    CLOCK_DRIFT,
    CLOCK_LABEL,
    CLOCK_NTP_UNSYNCED,
    DATA_DIR_SHARE,
    INHIBIT_TAG,
    INHIBIT_TIP,
    KIND_LABEL,
    SEVERITY_COLOR,
    STATE_LABEL,
    severity_label,
)

MAX_ITEMS = 200  # more would not be read on a wall; the API lists them all


def _compound_name(a: Alert, base: BaseLayers) -> str:
    place = base.places.get(a.compound_id or "")
    return place.name if place else (a.compound_id or "")


def inhibited_link(cause: Alert, className: str = "inhibit-link") -> dcc.Link:
    """"因「疑似停电」抑制", linking to the alert that mutes this one."""
    return dcc.Link(inhibit.WORDS.format(title=title_of(cause.rule)), href=f"/alerts/{cause.alert_id}",
                    className=className, title=INHIBIT_TIP)


def alert_item(a: Alert, base: BaseLayers, console: bool, cause: Alert | None = None) -> html.Li:
    colour = SEVERITY_COLOR.get(a.severity, "#888")
    meta = [KIND_LABEL.get(a.kind, a.kind or ""), a.device_id or "", STATE_LABEL.get(a.state, a.state)]
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
        dcc.Link(inhibit.unmark(a.message) or title_of(a.rule), href=f"/alerts/{a.alert_id}",
                 className="alert-message"),
        html.Div(" · ".join(m for m in meta if m), className="alert-meta"),
    ]
    if cause is not None:  # muted while its cause is open: said, with the way to the cause
        children.insert(2, inhibited_link(cause))
        children[0].children.insert(1, html.Span(INHIBIT_TAG, className="inhibit-tag", title=INHIBIT_TIP))
    if a.state == "acknowledged":  # in the head line, never over the buttons
        children[0].children.insert(1, html.Span("已确认", className="acked-tag"))
    if a.reopened:  # came back within its watch after a close: the same incident, again
        children[0].children.insert(1, html.Span(f"复燃×{a.reopened}", className="reopened-tag",
                                                 title="解除后观察期内再次报警"))
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
        # 派单, the field's progress and photos, 归档: on the alert's own page.
        dispatch = dcc.Link("派单", href=f"/alerts/{a.alert_id}", className="btn btn-dispatch btn-link",
                            title="派单、查看现场反馈、归档")
        buttons.insert(len(buttons) - 1, dispatch)
        children.append(html.Div(buttons, className="alert-actions"))
    cls = f"alert-item sev-{a.severity} state-{a.state}"
    return html.Li(
        children, className=cls, id={"type": "alert-item", "index": a.alert_id}, style={"borderLeftColor": colour}
    )


def resolved_item(a: Alert, base: BaseLayers) -> html.Li:
    how = f"{a.resolved_by} 解除" if a.resolved_by else "条件恢复，自动解除"
    return html.Li(
        [
            html.Div(
                className="alert-head",
                children=[
                    html.Span(severity_label(a.severity), className="sev-badge faded-badge"),
                    html.Span(COMMUNITIES.get(a.community, a.community), className="alert-community"),
                    html.Span(_compound_name(a, base), className="alert-compound"),
                    html.Span(local_time(a.resolved_at), className="alert-time", title=a.resolved_at or ""),
                ],
            ),
            dcc.Link(a.message or title_of(a.rule), href=f"/alerts/{a.alert_id}", className="alert-message"),
            html.Div(f"已解除 · {how}", className="alert-meta"),
        ],
        className=f"alert-item resolved sev-{a.severity}",
        style={"borderLeftColor": SEVERITY_COLOR.get(a.severity, "#888")},
    )


def alert_list(live: Live, base: BaseLayers, console: bool, rules_file: str | None = None) -> list[Any]:
    causes = inhibit.causes(live.alerts[:MAX_ITEMS], live.alerts, rules_file)
    items: list[Any] = [alert_item(a, base, console, causes.get(a.alert_id)) for a in live.alerts[:MAX_ITEMS]]
    if not live.alerts:
        items = [html.Li("当前无未解除告警", className="alert-empty")]
    if len(live.alerts) > MAX_ITEMS:
        items.append(html.Li(dcc.Link(f"另有 {len(live.alerts) - MAX_ITEMS} 条，见告警列表", href="/alerts"),
                             className="alert-empty"))
    if live.resolved:
        items.append(html.Li("近期解除", className="list-sep"))
        items += [resolved_item(a, base) for a in live.resolved[:20]]
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
                html.Div([html.Div(str(len(live.offline_ids)), className="big num-offline"), html.Div("离线")]),
                html.Div(
                    [
                        html.Div(str(sum(c.get("devices", 0) for c in counts.values())), className="big"),
                        html.Div("在册设备"),
                    ]
                ),
            ],
        )
    ]
    for slug, name in communities_seen().items():
        c = counts.get(slug, {})
        sev = [
            html.Span(
                [html.Span(str(c.get(s, 0)), className="n"), html.Span(SHORT[s], className="l")],
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
                        f"设备 {c.get('devices', 0)} · 告警设备 {c.get('alerting', 0)} · 离线 {c.get('offline', 0)}",
                        className="community-meta",
                    ),
                ],
            )
        )
    return cards


def wall_tiles(counts: Mapping[str, Mapping[str, int]]) -> list[Any]:
    """Per community, three labelled figures readable across the room: 未处置 / 已确认 / 离线."""
    out: list[Any] = []
    for slug, name in communities_seen().items():
        c = counts.get(slug, {})
        worst = next((s for s in SEVERITIES if c.get(s)), None)
        figs = [
            html.Div([html.Div(str(c.get(key, 0)), className="tile-n" + (f" {cls}" if c.get(key) else "")),
                      html.Div(text, className="tile-l")], className="tile-fig")
            for key, text, cls in (("active", "未处置", "hot"), ("acknowledged", "已确认", ""),
                                   ("offline", "离线", "grey"))
        ]
        out.append(html.Div([html.Div(name, className="tile-name"), html.Div(figs, className="tile-figs")],
                            className="wall-tile", id=f"tile-{slug}",
                            style={"borderTopColor": SEVERITY_COLOR[worst] if worst else "#2b3d57"}))
    return out


PART_LABEL = {"mqtt": "消息总线", "influxdb": "时序库", "ingest": "接入", "alerts": "告警引擎", "disk": "数据盘",
              "clock": CLOCK_LABEL}


def clock_words(detail: Mapping[str, Any]) -> str:
    """Why the clock light warns, in the page's words."""
    why = [CLOCK_NTP_UNSYNCED] if detail.get("ntp") == "no" else []
    if detail.get("drifting"):
        why.append(CLOCK_DRIFT.format(s=detail["skew_s"], n=detail["readings"]))
    return "；".join(why)


def service_bar(body: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for part, label in PART_LABEL.items():
        state = body.get(part)
        if state is None:
            continue
        detail = body.get("details", {}).get(part) or {}
        if part == "clock":
            err = clock_words(detail)
        elif state == "warn" and part == "disk":
            err = DATA_DIR_SHARE.format(pct=detail["data_dir_share_pct"], max=detail["data_dir_max_pct"])
        else:
            err = detail.get("error", "")
        cls = state if state in ("ok", "warn") else "down"
        out.append(
            html.Span(
                [html.Span(className="dot"), label],
                className="svc " + cls,
                title="正常" if state == "ok" else f"{'注意' if state == 'warn' else '异常'}: {err}",
            )
        )
    return out


def confirm_text(live: Any, what: str) -> str:
    """The confirm dialog while the danger is still measured: the live reading, its time, and that an
    override needs a reason."""
    return (f"⚠ 设备仍在报警，不能直接解除！\n最新读数 {live.words()}，报警值 {live.threshold}"
            f"{'' if live.holds else f'（已回落，恢复确认期 {live.holdoff_s:g} 秒未满）'}\n{what}\n\n"
            "如确需强制解除：请先在「处置备注」中写明理由（必填），再点「确定」。强制解除将记录在时间线，"
            "设备继续观察，再次报警即重开本警情。")
