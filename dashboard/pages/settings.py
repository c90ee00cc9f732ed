"""`/settings`: 通知设置 — a person of the on-call roster chooses which of their channels they want
alerts on, and quiet hours (Beijing time, may run past midnight); red always reaches them on every
channel (alerts/preferences.py decides). The signed-in account's roster person (`users add --person`,
`users person`) sets their own; an admin, or anyone on a loopback dev run without accounts, may pick
the person. Saving is a `preferences` command to the alerts service (the one writer), audited with
who and when; the page reads what is in force from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from alerts.configfile import ConfigError
from alerts.preferences import PreferenceError, Preferences, quiet_text
from alerts.roster import CHANNEL_FIELDS, Person, load_roster
from core.staff import open_accounts
from core.timebase import local_time
from dashboard import mapview
from dashboard.dispatchview import for_people
from dashboard.login import current_user, has_role
from dashboard.sessions import DISPLAY_KIND
from dashboard.theme import PREF_CHANNEL, PREF_WORDS

PATH = "/settings"
ORDER = 70  # place in the page list
TITLE = "通知设置 · 车城路街道 综合一张图"
W = PREF_WORDS


def people(d: Any) -> dict[str, Person]:
    """The roster's people by id (the roster in force: SC_ALERTS_ROSTER_FILE or the bundled one)."""
    path = d.settings.alerts_roster_file
    try:
        roster = load_roster(Path(path) if path else None)
    except ConfigError:
        return {}
    return {p.pid: p for p in roster.people() if p.pid}


def linked_person(d: Any) -> str | None:
    """The roster id the signed-in account stands for."""
    user = current_user()
    if user is None or user.kind == DISPLAY_KIND:
        return None
    acc = open_accounts(d.settings).get(user.username)
    return acc.person if acc is not None else None


def may_choose() -> bool:
    """Whether this request may set anyone's preferences: an admin, or a dev run without sign-in."""
    return has_role("admin")  # a display link is a viewer


def channel_options(p: Person | None) -> list[dict[str, str]]:
    return [{"label": PREF_CHANNEL[c], "value": c} for c in CHANNEL_FIELDS if p is not None and getattr(p, c)]


def current_words(pref: Preferences | None) -> str:
    if pref is None:
        return W["none_yet"]
    w = pref.window()
    return W["current"].format(channels="、".join(PREF_CHANNEL[c] for c in CHANNEL_FIELDS if c in pref.channels),
                               quiet=W["quiet_on"].format(words=w.words()) if w else W["no_quiet"],
                               by=pref.updated_by or "", at=local_time(pref.updated_at) if pref.updated_at else "")


def form_values(d: Any, pid: str | None) -> tuple[list[dict[str, str]], list[str], str, str, str]:
    """(channel options, channels chosen, quiet from, quiet to, what is in force in words) of a person."""
    p = people(d).get(pid or "")
    opts = channel_options(p)
    row = d.store.preferences().get(pid) if pid else None
    pref = Preferences.of_row(row) if row else None
    chosen = [c for c in CHANNEL_FIELDS if c in pref.channels] if pref else [o["value"] for o in opts]
    start, _, end = (pref.quiet or "").partition("-") if pref else ("", "", "")
    return opts, chosen, start, end, current_words(pref)


def layout(**_kw: Any) -> html.Div:
    d = mapview.dctx()
    everyone = people(d)
    mine = linked_person(d)
    choose = may_choose()
    pid = mine if mine in everyone else (next(iter(everyone), None) if choose else None)
    head = [html.H2(W["heading"]), html.Div(W["intro"], className="muted")]
    if pid is None:
        return html.Div(className="sub-page settings-page", children=[*head, html.Div(W["unlinked"],
                                                                                     className="action-msg")])
    opts, chosen, start, end, now_words = form_values(d, pid)
    return html.Div(
        className="sub-page settings-page",
        children=[
            *head,
            html.Div(W["red"], className="pref-red"),
            html.Div(className="shelf-form", children=[
                html.Label([W["person"], dcc.Dropdown(
                    id="pref-person", options=[{"label": p.name, "value": k} for k, p in everyone.items()],
                    value=pid, clearable=False, disabled=not choose, className="pref-person")],
                    className="form-label"),
                html.Div(W["channels"], className="form-label"),
                dcc.Checklist(id="pref-channels", options=opts, value=chosen, className="choice-list"),
                html.Div(W["quiet"], className="form-label"),
                html.Div([dcc.Input(id="pref-quiet-from", type="text", value=start, maxLength=5, placeholder="22:00",
                                    className="hhmm"), html.Span(W["to"]),
                          dcc.Input(id="pref-quiet-to", type="text", value=end, maxLength=5, placeholder="07:00",
                                    className="hhmm")], className="form-row hhmm-row"),
                html.Div(html.Button(W["save"], id="pref-save", className="btn btn-dispatch", n_clicks=0),
                         className="form-row"),
                html.Div(id="pref-msg", className="action-msg", role="status"),
            ]),
            html.Div(now_words, id="pref-current", className="muted"),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("pref-channels", "options"),
        Output("pref-channels", "value"),
        Output("pref-quiet-from", "value"),
        Output("pref-quiet-to", "value"),
        Output("pref-current", "children"),
        Input("pref-person", "value"),
        prevent_initial_call=True,
    )
    def _person(pid: str | None) -> tuple[Any, ...]:
        return form_values(d, pid)

    @app.callback(
        Output("pref-msg", "children"),
        Output("pref-current", "children", allow_duplicate=True),
        Input("pref-save", "n_clicks"),
        State("pref-person", "value"),
        State("pref-channels", "value"),
        State("pref-quiet-from", "value"),
        State("pref-quiet-to", "value"),
        prevent_initial_call=True,
    )
    def _save(n: int, pid: str | None, channels: list[str] | None, start: str | None,
              end: str | None) -> tuple[Any, Any]:
        if not n:
            return no_update, no_update
        # Checked here, whatever the page showed: one's own, or anyone's for an admin (or a dev run).
        if not pid or not (may_choose() or linked_person(d) == pid):
            return W["not_yours"], no_update
        if not channels:
            return W["pick_channel"], no_update
        try:
            quiet = quiet_text(start, end)
        except PreferenceError as exc:
            return str(exc), no_update
        out = d.actions.act("preferences", d.signer(), "console", person=pid, channels=list(channels), quiet=quiet)
        if not out.ok:
            return W["failed"].format(error=for_people(out.body.get("error"))), no_update
        pref = Preferences.of_row(out.body["preferences"])
        return W["saved"].format(by=d.signer()), current_words(pref)
