"""`/inbox`: the demo's notifications as their recipients would have seen them — the WeCom and
DingTalk duty groups' robot messages and each phone's SMS, newest first, per recipient, each with its
time (Beijing) and a link to the alert it is about. Read from the demo's local receiver
(alerts/inbox.py); the page exists only when that receiver is configured (`SC_DEMO_INBOX_PORT`),
and a wall display link cannot read it (it holds phone numbers)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, dcc, html

from alerts.inbox import InboxStore, Received, inbox_path
from alerts.rules import title_of
from core.contract import COMMUNITIES
from core.timebase import iso, local_time
from dashboard import mapview
from dashboard.login import current_user
from dashboard.scope import current_scope, inbox_in
from dashboard.sessions import DISPLAY_KIND
from dashboard.theme import INBOX_CHANNEL, INBOX_NAV, INBOX_WORDS

PATH = "/inbox"
ORDER = 80  # place in the page list
TITLE = "通知收件箱 · 车城路街道 综合一张图"
NAV_LABEL = INBOX_NAV
LIMIT = 100  # messages shown at once
REFRESH_MS = 4000
W = INBOX_WORDS

_stores: dict[Path, InboxStore] = {}
_lock = threading.Lock()


def shown(settings: Any) -> bool:
    """Only the demo, whose notifications go to its local receiver, has an inbox page."""
    return bool(settings.demo_inbox_port)


def store() -> InboxStore:
    path = inbox_path(mapview.dctx().settings.data_path)
    with _lock:
        if path not in _stores:
            _stores[path] = InboxStore(path)
        return _stores[path]


def may_read() -> bool:
    """Staff only: not a wall display link (its screen is seen by everyone in the room)."""
    user = current_user()
    return user is None or user.kind != DISPLAY_KIND


def who(channel: str, recipient: str, name: str, groups: list[str]) -> str:
    """The recipient as people say it: the duty group (numbered when there are several) or the person
    and phone."""
    if channel == "sms":
        return f"{name} {recipient}".strip()
    n = groups.index(recipient) + 1 if recipient in groups else 0
    return W["group"] + (f" {n}" if len(groups) > 1 and n else "")


def _groups(recipients: list[tuple[str, str, str, int]], channel: str) -> list[str]:
    return sorted(r for c, r, _n, _k in recipients if c == channel)


def choices(recipients: list[tuple[str, str, str, int]]) -> list[dict[str, str]]:
    total = sum(k for *_x, k in recipients)
    out = [{"label": f"{W['all']} ({total})", "value": ""}]
    for c, r, n, k in recipients:
        label = f"{INBOX_CHANNEL.get(c, c)} · {who(c, r, n, _groups(recipients, c))} ({k})"
        out.append({"label": label, "value": f"{c}|{r}"})
    return out


def about(alert_id: str | None) -> Any:
    """Which alert a message was about, linked to its page."""
    if not alert_id:
        return None
    alert = mapview.dctx().store.get(alert_id)
    if alert is None:
        return html.Div(dcc.Link(W["alert"], href=f"/alerts/{alert_id}"), className="inbox-about")
    where = COMMUNITIES.get(alert.community, alert.community)
    what = f"{title_of(alert.rule)} · {where} · {local_time(alert.started_at)}"
    return html.Div([html.Span(f"{W['about']}: "), dcc.Link(what, href=f"/alerts/{alert_id}")],
                    className="inbox-about")


def _below_title(m: Received) -> str:
    """The text under the card's title: without its first line when that line is the title itself
    (a robot message's heading, an SMS's first line), so it is not read twice."""
    first, _, rest = m.text.lstrip().partition("\n")
    return rest.lstrip("\n") if first.lstrip("#").strip().strip("*").strip() == m.title.strip() else m.text


def card(m: Received, recipients: list[tuple[str, str, str, int]]) -> html.Article:
    name = who(m.channel, m.recipient, m.name, _groups(recipients, m.channel))
    text = _below_title(m)
    body: Any = (dcc.Markdown(text, className="inbox-text md", link_target="_blank") if m.markdown
                 else html.Div(text, className="inbox-text plain"))
    unseen = [x for x in m.mentions if f"@{x}" not in m.text]  # DingTalk's are in the text already
    mentions = (html.Div(f"{W['mention']}: " + " ".join(f"@{x}" for x in unseen), className="inbox-mention")
                if unseen else None)
    return html.Article(
        className=f"inbox-msg ch-{m.channel}",
        children=[
            html.Div([html.Span(INBOX_CHANNEL.get(m.channel, m.channel), className="inbox-ch"),
                      html.Span(name, className="inbox-to"),
                      html.Span(local_time(iso(m.at)), className="inbox-time")], className="inbox-head"),
            html.Div(m.title, className="inbox-title"),
            body,
            mentions,
            about(m.alert_id),
        ],
    )


def messages(choice: str | None) -> tuple[list[Any], list[dict[str, str]], str]:
    """(cards, recipient choices, count line) for the chosen recipient ("" or None: all)."""
    if not may_read():
        return [html.Div(W["viewer"], className="inbox-empty")], [], ""
    s = store()
    channel, _, recipient = (choice or "").partition("|")
    scope = current_scope()
    if scope is None:
        recipients = s.recipients()
        got = s.recent(LIMIT, channel or None, recipient or None)
    else:  # only what was sent about alerts in the person's scope
        got, recipients = inbox_in(s, mapview.dctx().all_store, scope, LIMIT, channel or None, recipient or None)
    if not got:
        return [html.Div(W["empty"], className="inbox-empty")], choices(recipients), ""
    n = sum(k for c, r, _n, k in recipients if not channel or (c, r) == (channel, recipient))
    more = W["more"].format(n=LIMIT) if n > LIMIT else ""
    return [card(m, recipients) for m in got], choices(recipients), W["count"].format(n=n) + more


def layout(**_kw: Any) -> html.Div:
    cards, opts, count = messages(None)
    return html.Div(
        className="sub-page inbox-page",
        children=[
            html.H2(W["heading"]),
            html.P(W["intro"], className="muted inbox-intro"),
            dcc.Interval(id="inbox-tick", interval=REFRESH_MS),
            dcc.RadioItems(id="inbox-who", options=opts, value="", className="f-checks inbox-choice", inline=True),
            html.Div(count, id="inbox-count", className="muted"),
            html.Div(cards, id="inbox-list", className="inbox-list"),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("inbox-list", "children"),
        Output("inbox-who", "options"),
        Output("inbox-count", "children"),
        Input("inbox-tick", "n_intervals"),
        Input("inbox-who", "value"),
    )
    def _refresh(_n: int | None, choice: str | None) -> tuple[list[Any], list[dict[str, str]], str]:
        return messages(choice)
