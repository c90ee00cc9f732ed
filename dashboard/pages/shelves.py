"""`/shelves`: 屏蔽与维护 — shelve a device, a compound, a device kind or a rule for a maintenance window
(a reason and an end: a duration or a time; or 每周重复: weekdays and hours in Beijing time, for some
weeks; or 按定时计划: a cron expression in Beijing time and how long each window lasts), with a second
person's approval when it would silence a life-safety alarm (alerts/shelving.py
decides and says why), and the live shelves (who, why, until, life-safety marked, a recurring window in
words and whether it is open now) with 结束. Every action is a command to the alerts service; a viewer
sees and cannot act."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import flask
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from alerts.rules import rules_in_force, title_of
from alerts.shelving import DAY_WORD, DAYS, MAX_S, MAX_SERIES_S, ShelfError, in_force, parse_cron, parse_every
from core.contract import KIND_LABEL, KINDS
from core.timebase import BEIJING, beijing, local_time
from dashboard import mapview
from dashboard.dispatchview import for_people
from dashboard.login import has_role
from dashboard.shelfmark import SCOPE_WORD

PATH = "/shelves"
ORDER = 50  # place in the page list
TITLE = "屏蔽与维护 · 车城路街道 综合一张图"
REFRESH_MS = 3000
UNITS: dict[str, tuple[str, int]] = {"m": ("分钟", 60), "h": ("小时", 3600), "d": ("天", 86400)}
HOW = ("屏蔽期间，该设备、小区、设备类型或规则的告警照常记录，但不推送、不通知；到期自动恢复。"
       "每周重复的维护时段只在所选星期和时间内（北京时间）屏蔽；按定时计划的维护时段每次从计划时刻起屏蔽所填时长。"
       "燃气或红色告警的屏蔽须另一名值班员或管理员批准，红色告警照常通知。")
MODES = {"once": "一次", "weekly": "每周重复", "cron": "按定时计划"}
WEEKS = 12  # a recurring window's default length
MAX_WEEKS = int(MAX_SERIES_S // (7 * 86400))


def target_options(d: Any, scope: str) -> list[dict[str, str]]:
    """What may be shelved in a scope, named as staff name it (the value is the id the store keeps)."""
    if scope == "rule":
        path = d.settings.alerts_rules_file if flask.has_app_context() else None
        return [{"label": r.label, "value": r.name} for r in rules_in_force(path).values()]
    if scope == "compound":
        places = d.mapdata.layers().places
        return sorted(({"label": p.name, "value": cid} for cid, p in places.items()), key=lambda o: o["label"])
    if scope == "kind":
        return [{"label": KIND_LABEL[k], "value": k} for k in KINDS]
    return []


def target_name(d: Any, scope: str, target: str) -> str:
    if scope == "rule":
        return title_of(target)
    if scope == "compound":
        place = d.mapdata.layers().places.get(target)
        return place.name if place else target
    if scope == "kind":
        return KIND_LABEL.get(target, target)
    return target


def weekly_of(days: list[int] | None, start: str | None, end: str | None, weeks: Any) -> tuple[
        tuple[str, float] | tuple[None, None], str | None]:
    """A weekly window from the form: ((canonical text, seconds the series stands), None) or
    ((None, None), what is wrong)."""
    if not days:
        return (None, None), "请选择每周哪几天"
    hours = f"{(start or '').strip().replace('：', ':')}-{(end or '').strip().replace('：', ':')}"
    try:
        every = parse_every(f"{','.join(DAYS[d] for d in sorted(days))} {hours}").text()
    except ShelfError:
        return (None, None), "时段请写成 09:00 至 11:00（北京时间，可跨午夜，如 22:00 至 06:00）"
    if isinstance(weeks, bool) or not isinstance(weeks, int | float) or not 0 < weeks <= MAX_WEEKS:
        return (None, None), f"重复周数须为 1 至 {MAX_WEEKS}"
    return (every, float(weeks) * 7 * 86400), None


def cron_of(expr: str | None, amount: Any, unit: str | None, weeks: Any) -> tuple[
        tuple[str, float] | tuple[None, None], str | None]:
    """A cron window from the form (five fields in Beijing time, each window's length, for some weeks):
    ((canonical text, seconds the series stands), None) or ((None, None), what is wrong)."""
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        return (None, None), "请填写每次维护的时长"
    try:
        every = parse_cron(expr or "", float(amount) * UNITS.get(unit or "h", UNITS["h"])[1]).text()
    except ShelfError:
        return (None, None), ("定时计划请写五段：分 时 日 月 星期（北京时间），如 0 9 * * 1-5 为每周一至周五 9 点；"
                              "每次时长 1 分钟至 7 天")
    if isinstance(weeks, bool) or not isinstance(weeks, int | float) or not 0 < weeks <= MAX_WEEKS:
        return (None, None), f"重复周数须为 1 至 {MAX_WEEKS}"
    return (every, float(weeks) * 7 * 86400), None


def end_time(text: str, now: float) -> float | None:
    """An end typed as staff write it, in Beijing time: "18:30" (the next such time) or
    "2026-12-05 08:00"; None when it is neither."""
    t = text.strip().replace("T", " ").replace("：", ":")
    try:
        return datetime.strptime(t, "%Y-%m-%d %H:%M").replace(tzinfo=BEIJING).timestamp()
    except ValueError:
        pass
    try:
        hm = datetime.strptime(t, "%H:%M")
    except ValueError:
        return None
    today = beijing(now).replace(hour=hm.hour, minute=hm.minute, second=0, microsecond=0)
    return (today if today.timestamp() > now else today + timedelta(days=1)).timestamp()


def seconds_of(amount: Any, unit: str | None, until: str | None, now: float) -> tuple[float | None, str | None]:
    """The shelf's length from a duration, or from an end time (Beijing, from the page's time field):
    (seconds, None) or (None, what is wrong)."""
    if until and until.strip():
        end = end_time(until, now)
        if end is None:
            return None, "结束时间请写成 18:30 或 2026-12-05 08:00（北京时间）"
        secs = end - now
    else:
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            return None, "请填写屏蔽时长，或选择结束时间"
        secs = float(amount) * UNITS.get(unit or "h", UNITS["h"])[1]
    if not 0 < secs <= MAX_S:
        return None, f"屏蔽须在现在之后结束，且不超过 {MAX_S // 86400} 天"
    return secs, None


def shelf_items(d: Any, can_act: bool) -> list[Any]:
    rows = d.store.shelves(live_at=time.time())
    if not rows:
        return [html.Li("当前没有屏蔽", className="muted")]
    out = []
    now = time.time()
    for s in rows:
        life = bool(s.get("life_safety"))
        head: list[Any] = [html.Span("生命安全", className="shelf-life")] if life else []
        head.append(html.Span(f"{SCOPE_WORD.get(s['scope'], s['scope'])} {target_name(d, s['scope'], s['target'])}",
                              className="shelf-what"))
        if s.get("every"):
            head.append(html.Span(parse_every(s["every"]).words(), className="shelf-every"))
            head.append(html.Span("维护中" if in_force(s, now) else "时段外", className="shelf-open muted"))
        meta = f"至 {local_time(s['until_iso'])}{' 止' if s.get('every') else ''} · {s['by']} 屏蔽" + (
            f"，{s['approved_by']} 批准" if s.get("approved_by") else "") + f" · 理由：{s['reason']}"
        out.append(html.Li([*head, html.Span(meta, className="shelf-meta"),
                            html.Button("结束", id={"type": "unshelve", "index": s["shelf_id"]}, n_clicks=0,
                                        className="btn btn-resolve", disabled=not can_act,
                                        title="结束屏蔽，告警恢复推送和通知")],
                           className="shelf-item" + (" life" if life else ""), id=f"shelf-{s['shelf_id']}"))
    return out


def duration_row(amount_id: str, unit_id: str) -> html.Div:
    """How long: a number and its unit (a one-off shelf; each run of a cron window)."""
    return html.Div([dcc.Input(id=amount_id, type="number", min=1, step=1, value=2, className="minutes"),
                     dcc.RadioItems(id=unit_id, options=[{"label": w, "value": k} for k, (w, _s) in UNITS.items()],
                                    value="h", className="choice-list")], className="form-row")


def weeks_field(input_id: str) -> html.Label:
    """For how many weeks a recurring window repeats."""
    return html.Label(["重复周数", dcc.Input(id=input_id, type="number", min=1, max=MAX_WEEKS, step=1, value=WEEKS,
                                          className="minutes")], className="form-label")


def layout(**_kw: Any) -> html.Div:
    d = mapview.dctx()
    can_act = has_role("operator")
    return html.Div(
        className="sub-page shelves-page",
        children=[
            dcc.Interval(id="shelves-tick", interval=REFRESH_MS),
            html.H2("屏蔽与维护"),
            html.Div(HOW, className="muted"),
            html.Div(
                className="shelf-form",
                children=[
                    html.Div("屏蔽对象", className="form-label"),
                    dcc.RadioItems(id="shelf-scope", options=[{"label": w, "value": k} for k, w in SCOPE_WORD.items()],
                                   value="device", className="choice-list"),
                    dcc.Input(id="shelf-device", type="text", placeholder="设备编号，如 G-000123", value="",
                              maxLength=40),
                    html.Div(dcc.Dropdown(id="shelf-target", options=[], placeholder="选择小区、设备类型或规则",
                                          className="shelf-target"), id="shelf-target-wrap", hidden=True),
                    html.Label(["理由", dcc.Input(id="shelf-reason", type="text", value="", maxLength=200,
                                                placeholder="如：燃气公司检修主管道")], className="form-label"),
                    html.Div("屏蔽方式", className="form-label"),
                    dcc.RadioItems(id="shelf-mode", options=[{"label": w, "value": k} for k, w in MODES.items()],
                                   value="once", className="choice-list"),
                    html.Div(id="shelf-once", children=[
                        html.Div("时长", className="form-label"),
                        duration_row("shelf-amount", "shelf-unit"),
                        html.Label(["或结束于（北京时间）", dcc.Input(id="shelf-until", type="text", value="",
                                                              maxLength=20,
                                                              placeholder="如 18:30 或 2026-12-05 08:00")],
                                   className="form-label")]),
                    html.Div(id="shelf-weekly", hidden=True, children=[
                        html.Div("每周（北京时间）", className="form-label"),
                        dcc.Checklist(id="shelf-days", options=[{"label": f"周{w}", "value": i}
                                                                for i, w in enumerate(DAY_WORD)],
                                      value=[0, 1, 2, 3, 4], className="choice-list"),
                        html.Div([dcc.Input(id="shelf-from", type="text", value="09:00", maxLength=5,
                                            className="hhmm"), html.Span("至"),
                                  dcc.Input(id="shelf-to", type="text", value="11:00", maxLength=5,
                                            className="hhmm")], className="form-row hhmm-row"),
                        weeks_field("shelf-weeks")]),
                    html.Div(id="shelf-cron", hidden=True, children=[
                        html.Label(["定时计划（分 时 日 月 星期，北京时间）",
                                    dcc.Input(id="shelf-cron-expr", type="text", value="0 9 * * 1-5", maxLength=60,
                                              placeholder="如 0 9 * * 1-5：每周一至周五 9 点")],
                                   className="form-label"),
                        html.Div("每次时长", className="form-label"),
                        duration_row("shelf-cron-amount", "shelf-cron-unit"),
                        weeks_field("shelf-cron-weeks")]),
                    html.Label(["批准人账号（燃气或红色告警须另一名值班员或管理员批准）",
                                dcc.Input(id="shelf-approver", type="text", value="", maxLength=64,
                                          placeholder="第二人的登录账号")], className="form-label"),
                    html.Div(html.Button("屏蔽", id="shelf-btn", className="btn btn-dispatch", n_clicks=0,
                                         disabled=not can_act), className="form-row"),
                    html.Div(id="shelf-msg", className="action-msg", role="status"),
                ],
            ),
            html.H3("生效中的屏蔽"),
            html.Ul(shelf_items(d, can_act), id="shelf-list", className="shelf-list"),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("shelf-device", "style"),
        Output("shelf-target-wrap", "hidden"),
        Output("shelf-target", "options"),
        Output("shelf-target", "value"),
        Input("shelf-scope", "value"),
        prevent_initial_call=True,
    )
    def _scope(scope: str) -> tuple:
        device = scope == "device"
        return ({} if device else {"display": "none"}), device, target_options(d, scope), None

    @app.callback(
        Output("shelf-once", "hidden"),
        Output("shelf-weekly", "hidden"),
        Output("shelf-cron", "hidden"),
        Input("shelf-mode", "value"),
        prevent_initial_call=True,
    )
    def _mode(mode: str) -> tuple[bool, bool, bool]:
        return mode != "once", mode != "weekly", mode != "cron"

    @app.callback(
        Output("shelf-list", "children"),
        Input("shelves-tick", "n_intervals"),
        Input("shelf-msg", "children"),
    )
    def _list(_n: int, _msg: Any) -> Any:
        return shelf_items(d, has_role("operator"))

    @app.callback(
        Output("shelf-msg", "children"),
        Input("shelf-btn", "n_clicks"),
        Input({"type": "unshelve", "index": ALL}, "n_clicks"),
        State("shelf-scope", "value"),
        State("shelf-device", "value"),
        State("shelf-target", "value"),
        State("shelf-reason", "value"),
        State("shelf-amount", "value"),
        State("shelf-unit", "value"),
        State("shelf-until", "value"),
        State("shelf-approver", "value"),
        State("shelf-mode", "value"),
        State("shelf-days", "value"),
        State("shelf-from", "value"),
        State("shelf-to", "value"),
        State("shelf-weeks", "value"),
        State("shelf-cron-expr", "value"),
        State("shelf-cron-amount", "value"),
        State("shelf-cron-unit", "value"),
        State("shelf-cron-weeks", "value"),
        prevent_initial_call=True,
    )
    def _act(_n: int, _u: list[int | None], scope: str, device: str | None, target: str | None,
             reason: str | None, amount: Any, unit: str | None, until: str | None, approver: str | None,
             mode: str | None, days: list[int] | None, start: str | None, end: str | None, weeks: Any,
             cron: str | None, cron_amount: Any, cron_unit: str | None, cron_weeks: Any) -> Any:
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update  # a redrawn list, not a click
        if ctx.triggered_id != "shelf-btn":
            out = d.command("unshelve", shelf_id=ctx.triggered_id["index"])
            return f"已结束屏蔽（{d.signer()}）" if out.ok else f"未能结束: {for_people(out.body.get('error'))}"
        what = ((device or "").strip() if scope == "device" else target) or ""
        if not what:
            return "请填写设备编号，或选择小区/规则"
        if not (reason or "").strip():
            return "请写明屏蔽理由"
        every: str | None = None
        if mode == "weekly":
            (every, secs), wrong = weekly_of(days, start, end, weeks)
        elif mode == "cron":
            (every, secs), wrong = cron_of(cron, cron_amount, cron_unit, cron_weeks)
        else:
            secs, wrong = seconds_of(amount, unit, until, time.time())
        if secs is None:
            return wrong
        out = d.command("shelve", scope=scope, target=what, reason=(reason or "").strip(), seconds=round(secs),
                        approved_by=(approver or "").strip() or None, every=every)
        if not out.ok:
            return f"未能屏蔽: {for_people(out.body.get('error'))}"
        if every:
            return (f"已设维护时段：{SCOPE_WORD.get(scope, scope)} {target_name(d, scope, what)} "
                    f"{parse_every(every).words()}，至 {local_time(out.body.get('until_iso'))} 止（{d.signer()}）")
        return (f"已屏蔽：{SCOPE_WORD.get(scope, scope)} {target_name(d, scope, what)} 至 "
                f"{local_time(out.body.get('until_iso'))}（{d.signer()}）")
