"""HTML for closing an alert out on its page: the 派单 form, the dispatches with their progress and the
field feedback (cause, action, text, photos), and 归档 with a cause. The actions themselves are
commands to the alerts service (Dashboard.dispatch / Dashboard.command); this module only draws."""

from __future__ import annotations

import re
import time
from typing import Any

from dash import dcc, html

from alerts.archive import Archived
from alerts.dispatch import CAUSES, STATE_LABEL, Dispatch
from alerts.teams import Teams
from core.contract import Alert
from core.timebase import local_time
from dashboard.closeout import MAX_DEADLINE_MIN

DEADLINE_MIN = 30  # the form's first deadline, minutes
WHOLE_TEAM = ""  # the member choice meaning "the team" (its first member gets the message)
_CJK = re.compile(r"[\u4e00-\u9fff]")
STEPS = (("created_at", "派单"), ("accepted_at", "接单"), ("arrived_at", "到场"), ("done_at", "反馈"))


def for_people(text: str | None) -> str:
    """A refusal as staff read it: the service's words without the parts addressed to programs (a
    parenthesis or a closing sentence in English, a "refused:" prefix); a refusal said in English with
    its Chinese in brackets is that Chinese."""
    t = re.sub(r"^\s*refused:\s*", "", text or "")
    if not _CJK.search(re.sub(r"[(（][^()（）]*[)）]", "", t)):
        inner = re.findall(r"[(（]([^()（）]*[\u4e00-\u9fff][^()（）]*)[)）]", t)
        if inner:
            return "；".join(inner)
    t = re.sub(r"\s*[(（][^()（）\u4e00-\u9fff]*[)）]", "", t)
    t = re.sub(r"(?<=[。.;；!！])\s*[A-Za-z][^\u4e00-\u9fff]*$", "", t)
    return t.strip()


def team_options(teams: Teams | None, community: str) -> list[dict[str, str]]:
    """The teams that serve the alert's community."""
    return [{"label": f"{t.name}（{t.type}）", "value": t.team_id}
            for t in (teams.teams.values() if teams else []) if t.serves(community)]


def member_options(teams: Teams | None, team_id: str | None) -> list[dict[str, str]]:
    team = teams.get(team_id or "") if teams else None
    if team is None:
        return []
    return [{"label": "整队（首位成员接收）", "value": WHOLE_TEAM},
            *({"label": m.name, "value": m.member_id} for m in team.members)]


def dispatch_form(teams: Teams | None, community: str, can_act: bool, hidden: bool = False) -> html.Div:
    """The 派单 form (hidden once the alert is archived: its case is closed)."""
    opts = team_options(teams, community)
    return html.Div(
        className="dispatch-form",
        id="dispatch-form",
        hidden=hidden,
        children=[
            html.Div("派单对象", className="form-label"),
            dcc.RadioItems(id="dispatch-team", options=opts, value=opts[0]["value"] if opts else None,
                           className="choice-list"),
            html.Div("接单人（可选）", className="form-label"),
            dcc.RadioItems(id="dispatch-member", options=member_options(teams, opts[0]["value"] if opts else None),
                           value=WHOLE_TEAM, className="choice-list"),
            html.Div([html.Label(["接单时限（分钟）",
                                  dcc.Input(id="dispatch-minutes", type="number", min=1, max=MAX_DEADLINE_MIN, step=1,
                                            value=DEADLINE_MIN, className="minutes")], className="form-label"),
                      html.Button("派单", id="dispatch-btn", className="btn btn-dispatch", n_clicks=0,
                                  disabled=not can_act or not opts)],
                     className="form-row"),
        ],
    )


def _photo(d: Dispatch, n: int) -> html.A:
    """A thumbnail from the signed-in photo route, opening the photo full size."""
    src = f"/api/dispatches/{d.dispatch_id}/photos/{n}"
    return html.A(html.Img(src=src, className="fb-photo", alt=f"现场照片 {n}"), href=src, target="_blank",
                  className="fb-photo-link", title=f"现场照片 {n}：点击看原图")


def dispatch_card(d: Dispatch, can_act: bool, now: float | None = None) -> html.Li:
    now = time.time() if now is None else now
    overdue = d.overdue(now)
    head = [html.Span(d.team_name, className="dp-team"),
            html.Span(STATE_LABEL.get(d.state, d.state), className=f"dp-state dp-{d.state}")]
    if d.assignee and d.assignee != d.team_name:  # a whole-team dispatch is assigned to the team itself
        head.insert(1, html.Span(d.assignee, className="dp-who"))
    if overdue:
        head.append(html.Span("已超时未接单", className="dp-overdue"))
    steps = [f"{word} {local_time(getattr(d, f))}" for f, word in STEPS if getattr(d, f)]
    body: list[Any] = [
        html.Div(head, className="dp-head"),
        html.Div(f"时限 {local_time(d.deadline)} · 派单人 {d.created_by}" + (f" · 说明 {d.note}" if d.note else ""),
                 className="dp-meta"),
        html.Div(" → ".join(steps), className="dp-steps"),
    ]
    if d.state == "done":
        facts = [("原因", d.cause), ("措施", d.action_taken), ("现场说明", d.feedback)]
        body.append(html.Dl([x for k, v in facts if v for x in (html.Dt(k), html.Dd(v))], className="facts fb-facts"))
        if d.photos:
            body.append(html.Div([_photo(d, i + 1) for i in range(len(d.photos))], className="fb-photos"))
    if d.is_open:
        body.append(html.Button("撤回派单", id={"type": "dispatch-cancel", "index": d.dispatch_id},
                                className="btn btn-resolve", n_clicks=0, disabled=not can_act))
    return html.Li(body, className="dp-card" + (" dp-late" if overdue else ""), id=f"dp-{d.dispatch_id}")


def dispatch_list(ds: list[Dispatch], can_act: bool) -> list[Any]:
    if not ds:
        return [html.Li("尚未派单", className="muted")]
    return [dispatch_card(d, can_act) for d in ds]


def signature(ds: list[Dispatch], now: float | None = None) -> list[Any]:
    """What the list shows depends on: the page's tick redraws it only when this changes."""
    now = time.time() if now is None else now
    return [[d.dispatch_id, d.state, d.done_at, d.overdue(now)] for d in ds]


def archive_block(a: Alert, done: Archived | None, can_act: bool) -> list[Any]:
    if done is not None:
        return [html.Div(f"已归档：{done.cause} · {done.archived_by} · {local_time(done.archived_at)}"
                         + (f" · {done.note}" if done.note else ""), className="archived-line", id="archived")]
    if a.state != "resolved":
        return [html.Div("解除后，按原因分类归档。", className="muted")]
    return [
        html.Div("原因分类", className="form-label"),
        dcc.RadioItems(id="archive-cause", options=[{"label": c, "value": c} for c in CAUSES], value=None,
                       className="choice-list"),
        html.Button("归档", id="archive-btn", className="btn btn-dispatch", n_clicks=0, disabled=not can_act),
    ]


def archive_confirm_text(live: Any) -> str:
    """The confirm dialog when the device is still in alarm at 归档 (alerts/guard.py)."""
    return (f"⚠ 设备仍在报警，不能直接归档！\n最新读数 {live.words()}，报警值 {live.threshold}"
            f"{'' if live.holds else f'（已回落，恢复确认期 {live.holdoff_s:g} 秒未满）'}\n\n"
            "如确需强制归档：请先在「处置备注」中写明理由（必填），再点「确定」。强制归档将记录在时间线。")
