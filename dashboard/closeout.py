"""Closing the loop on the dashboard's server: dispatch (派单), archive (归档), the report, and the
field page of dispatched staff. `register_closeout(server, settings, store)` is the one call
app.py makes.

JSON API (alongside the contract's /api, behind the same sign-in or bearer token; who acts is the
authenticated identity, a body's "by" only a remark in the note):
  GET  /api/dispatch/teams                      teams and members (+ the file's error, if any)
  GET  /api/dispatch/options                    cause categories and actions
  POST /api/alerts/{id}/dispatch                {"team", "member"?, "deadline" (ISO) | "deadline_min", "by"?, "note"?}
  GET  /api/alerts/{id}/dispatches
  POST /api/dispatches/{dispatch_id}/cancel     {"by"?, "note"?}  take an open dispatch back
  GET  /api/dispatches?community=               open dispatches
  GET  /api/dispatches/{dispatch_id}/photos/{n} a feedback photo (n = 1..3)
  POST /api/alerts/{id}/archive                 {"cause", "by"?, "note"?}
  GET  /api/archive/pending?community=          resolved red/orange alerts not archived yet
  GET  /api/report?month=2026-11 | from=&to=  [&community=]   (JSON; /api/report.csv as CSV)
Pages: /report (HTML with plotly charts, plotly.js served locally), /report.csv, /d/<token> (field page).
"""

from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, jsonify, request, send_file

from alerts.archive import pending
from alerts.configfile import Watched
from alerts.dispatch import ACTIONS, CAUSES, MAX_TEXT, DispatchBook, Refused, link_secret, photo_path
from alerts.patrols import plans_for_report
from alerts.report import ALL_LABEL, Period, Report, build_report, place_names, to_csv, to_html
from alerts.store import Store
from alerts.teams import Teams, TeamsError, TeamsWatcher
from core.contract import COMMUNITIES
from core.settings import Settings
from core.timebase import beijing, iso, parse_iso
from dashboard.actions import AlertActions
from dashboard.api import error
from dashboard.fieldpage import register_field_page
from dashboard.login import acting_as
from dashboard.scope import (
    communities_seen,
    community_in,
    current_scope,
    hidden,
    scope_words,
    scoped_report,
    scoped_store,
    teams_in,
)
from dashboard.theme import BG, COMMUNITY_EDGE, GRID, MUTED, NAV, PANEL, TEXT

log = logging.getLogger(__name__)

MAX_DEADLINE_MIN = 7 * 24 * 60


class Places:
    """Compound names and device places for pages and reports, loaded once in the background use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._names: tuple[dict[str, str], dict[str, str]] | None = None
        self._at = 0.0

    def get(self) -> tuple[dict[str, str], dict[str, str]]:
        with self._lock:
            if self._names is None or time.monotonic() - self._at > 300:
                self._names = place_names(self.settings)
                self._at = time.monotonic()
            return self._names


class TeamsHolder:
    """The teams in force: a bad file at start or after an edit is reported, never fatal."""

    def __init__(self, settings: Settings) -> None:
        self._watcher: Watched | None = None
        self._file = settings.dispatch_teams_file
        self.start_error: str | None = None
        try:
            self._watcher = TeamsWatcher(self._file)
        except TeamsError as exc:
            self.start_error = str(exc)
            log.error("dispatch teams not loaded: %s", exc)

    def current(self) -> tuple[Teams | None, str | None]:
        if self._watcher is None:
            try:
                self._watcher = TeamsWatcher(self._file)
                self.start_error = None
            except TeamsError as exc:
                self.start_error = str(exc)
                return None, self.start_error
        return self._watcher.current(), self._watcher.error


def dispatch_args(teams: TeamsHolder, team_id: str | None, member_id: str | None, deadline: str | None,
                  deadline_min: Any, now: float) -> dict[str, Any]:
    """A dispatch's team, member and deadline checked against the teams in force (for the /api and the
    console alike): the command's arguments, or Refused saying what is wrong. The deadline is an
    ISO-8601 time, or else `deadline_min` minutes from `now`."""
    t, err = teams.current()
    if t is None:
        raise Refused(503, f"no dispatch teams: {err}")
    team = t.get(team_id or "")
    if team is None:
        raise Refused(400, f"unknown team {team_id!r}; use {', '.join(t.teams)}")
    member = team.member(member_id) if member_id else None
    if member_id and member is None:
        raise Refused(400, f"team {team.team_id} has no member {member_id!r}")
    if deadline is not None:
        dl = parse_iso(deadline)
        if dl is None:
            raise Refused(400, '"deadline" must be an ISO-8601 time, e.g. 2026-11-25T04:00:00Z')
        when = iso(dl.timestamp())
    else:
        mins = deadline_min
        if isinstance(mins, bool) or not isinstance(mins, int | float) or not 1 <= mins <= MAX_DEADLINE_MIN:
            raise Refused(400, f'"deadline_min" must be a number of minutes, 1..{MAX_DEADLINE_MIN}')
        when = iso(now + float(mins) * 60)
    return {"team": team.team_id, "member": member.member_id if member else None, "deadline": when}


def _json_body() -> dict[str, Any]:
    doc = request.get_json(force=True, silent=True) if request.get_data(cache=True).strip() else {}
    if not isinstance(doc, dict):
        raise Refused(400, "body is not a JSON object")
    for k, v in doc.items():
        if isinstance(v, str) and len(v) > MAX_TEXT:
            raise Refused(400, f'"{k}" is longer than {MAX_TEXT} characters')
    return doc


def _text(doc: dict[str, Any], key: str) -> str | None:
    v = doc.get(key)
    if v is not None and not isinstance(v, str):
        raise Refused(400, f'"{key}" must be a string')
    return v.strip() if isinstance(v, str) and v.strip() else None


def _operator(doc: dict[str, Any], what: str) -> tuple[str, str | None]:
    """(who acts, the note): the authenticated identity; the body's "by" only in the loopback-only dev
    run, where nobody signs in."""
    who, note = acting_as(_text(doc, "by"), _text(doc, "note"))
    if not who:
        raise Refused(400, f'"by" (who {what}) is required')
    return who, note


def period_from_args(args: Any) -> tuple[Period, str | None]:
    community = args.get("community") or None
    if community is not None and community not in COMMUNITIES:
        raise Refused(400, f"unknown community {community!r}; use {', '.join(COMMUNITIES)}")
    try:
        if args.get("from") or args.get("to"):
            if not (args.get("from") and args.get("to")):
                raise Refused(400, "give both from= and to= (YYYY-MM-DD)")
            return Period.days(args["from"], args["to"]), community
        return (Period.month(args["month"]) if args.get("month") else Period.this_month()), community
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    except OverflowError:  # e.g. to=9999-12-31: the day after it is past the calendar
        raise Refused(400, "dates must lie between 1970-01-01 and 9998-12-31") from None


def report_json(rep: Report) -> dict[str, Any]:
    out: dict[str, Any] = {"period": {"label": rep.period.label, "from": iso(rep.period.start),
                                      "to": iso(rep.period.end)}, "generated_at": rep.generated_at, "communities": {}}
    for c, sec in rep.sections.items():
        out["communities"][c] = {
            "name": sec.name, "total": sec.total,
            "by_kind_severity": [{"kind": k, "severity": s, "count": n} for (k, s), n in
                                 sorted(sec.by_kind_severity.items())],
            **{f"time_to_{m}_s": {"n": st.n, "median": st.median, "p90": st.p90} for m, st in sec.stats().items()},
            "by_compound": [{"compound_id": cid, "name": rep.compound_names.get(cid), "count": n}
                            for cid, n in sec.by_compound.most_common()],
            "top_repeat_devices": [{"device_id": d, "place": rep.device_places.get(d), "count": n}
                                   for d, n in sec.top_devices()],
            "open_dispatches": [d.as_json() for d in sec.open_dispatches],
            "patrols": {"rounds": sec.patrol_rounds, "done": sec.patrol_done, "completion": sec.patrol_completion},
            "hazards": {"open": sec.hazards_open, "closed": sec.hazards_closed, "overdue": sec.hazards_overdue},
        }
    return out


# The report served inside the dashboard wears the dashboard's look (dark, the same title bar and
# navigation); the file written by `smartcommunity report` keeps the light, printable one.
REPORT_CSS = f"""body{{font-family:"Noto Sans CJK SC",sans-serif;margin:0;background:{BG};color:{TEXT}}}
main{{margin:0 auto;max-width:1400px;padding:12px 16px}}h1{{font-size:26px}}
h2{{font-size:21px;border-bottom:2px solid {COMMUNITY_EDGE};padding-bottom:4px;margin-top:32px}}
h3{{font-size:17px;margin:18px 0 6px}}table{{border-collapse:collapse;margin:6px 0;font-size:16px;max-width:100%}}
td,th{{border:1px solid {GRID};padding:6px 10px;text-align:left}}th{{background:{PANEL}}}.none,.meta{{color:{MUTED}}}
a{{color:#9cc7ff}}.charts{{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(360px,100%),1fr));gap:8px}}
.chart{{min-width:0;background:{PANEL};border-radius:8px}}
.topbar{{display:flex;align-items:center;gap:18px;padding:6px 18px;min-height:60px;background:{PANEL};flex-wrap:wrap}}
.topbar b{{font-size:24px;letter-spacing:2px}}.nav-link{{color:#cfe0f7;text-decoration:none;font-size:17px;
padding:8px 12px;border-radius:6px;white-space:nowrap;display:inline-block}}.nav-link.on{{background:#16304f}}
form.nav{{display:flex;flex-wrap:wrap;gap:10px;align-items:center;font-size:16px;margin:8px 0}}
form.nav input,form.nav select,form.nav button{{font-size:16px;min-height:40px;background:{PANEL};color:{TEXT};
border:1px solid {GRID};border-radius:6px;padding:4px 8px;color-scheme:dark}}
@media (max-width:600px){{table{{display:block;overflow-x:auto}}td,th{{white-space:nowrap}}
.topbar b{{font-size:18px}}}}"""
REPORT_CHARTS = {"template": "plotly_dark", "paper_bgcolor": PANEL, "plot_bgcolor": PANEL}


def recent_months(n: int = 24) -> list[str]:
    """This month and the n - 1 before it, newest first ("2026-11"), in Beijing time."""
    y, m = beijing().year, beijing().month
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out


def report_nav(args: Any, period_label: str = "", more_nav: list[tuple[str, str]] | None = None) -> str:
    """The dashboard's title bar, a period picker (plain GET form, the month shown filled in) and
    the CSV of what is shown."""
    month = args.get("month") or (period_label if len(period_label) == 7 else "")
    months = recent_months()
    if month and month not in months:
        months.insert(0, month)
    # A list of months written in Chinese (a month <input> would show the browser's own language).
    month_opts = "".join(f'<option value="{html.escape(m)}"{" selected" if m == month else ""}>'
                         f"{html.escape(m[:4])}年{html.escape(m[5:7])}月</option>" for m in months)
    comm = args.get("community") or ""
    opts = "".join(f'<option value="{c}"{" selected" if c == comm else ""}>{html.escape(n)}</option>'
                   for c, n in communities_seen().items())
    query = html.escape(urlencode({k: v for k, v in args.items() if k in ("month", "from", "to", "community")}))
    scope = current_scope()
    everything = html.escape((scope_words(scope) if scope is not None else "") or ALL_LABEL)
    links = "".join(f'<a class="nav-link{" on" if href == "/report" else ""}" href="{href}">{name}</a>'
                    for name, href in (*NAV, *(more_nav or [])))
    return (f'<header class="topbar"><b>车城路街道 综合一张图</b><nav>{links}</nav></header><main>'
            '<form class="nav" method="get" action="/report"><label>月份 <select name="month" id="month">'
            f'{month_opts}</select></label> <label>社区 <select name="community">'
            f'<option value="">{everything}</option>{opts}'
            '</select></label> <button type="submit">查看</button> '
            f'<a href="/report.csv?{query}" id="csv">下载 CSV</a></form>')


def register_closeout(server: Flask, settings: Settings, store: Store, actions: AlertActions,
                      teams: TeamsHolder | None = None) -> None:
    places = Places(settings)
    book = DispatchBook(store, settings, places=places.get)
    teams = teams or TeamsHolder(settings)
    secret = link_secret(settings.data_path)
    api = Blueprint("sc_closeout", __name__, url_prefix="/api")

    @api.errorhandler(Refused)
    def _refused(exc: Refused) -> tuple[Response, int]:
        if exc.body:
            return jsonify({**exc.body, "error": exc.message, "status": exc.status}), exc.status
        return error(exc.status, exc.message)

    @api.get("/dispatch/teams")
    def list_teams() -> tuple[Response, int]:
        t, err = teams.current()
        return jsonify({"teams": teams_in(t.as_json()) if t else [], "error": err,
                        "source": t.source if t else None}), 200

    @api.get("/dispatch/options")
    def options() -> tuple[Response, int]:
        return jsonify({"causes": list(CAUSES), "actions": list(ACTIONS)}), 200

    @api.post("/alerts/<alert_id>/dispatch")
    def dispatch(alert_id: str) -> tuple[Response, int]:
        if hidden(store, alert_id):
            raise Refused(404, f"no alert {alert_id}")
        doc = _json_body()
        deadline = _text(doc, "deadline") if doc.get("deadline") is not None else None
        if doc.get("deadline") is not None and deadline is None:
            raise Refused(400, '"deadline" must be an ISO-8601 time, e.g. 2026-11-25T04:00:00Z')
        args = dispatch_args(teams, _text(doc, "team"), _text(doc, "member"), deadline, doc.get("deadline_min", 30),
                             time.time())
        who, note = _operator(doc, "dispatches")
        done = actions.must("dispatch", who, "api", alert_id=alert_id, note=note, **args)
        return jsonify(done), 201

    @api.post("/dispatches/<dispatch_id>/cancel")
    def cancel_dispatch(dispatch_id: str) -> tuple[Response, int]:
        doc = _json_body()
        who, note = _operator(doc, "takes the dispatch back")
        return jsonify(actions.must("dispatch_cancel", who, "api", dispatch_id=dispatch_id, note=note)), 200

    def seen_book() -> DispatchBook:
        """The dispatches as this request's person may see them (dashboard/scope.py)."""
        return DispatchBook(scoped_store(store), settings, places=places.get)

    @api.get("/alerts/<alert_id>/dispatches")
    def alert_dispatches(alert_id: str) -> tuple[Response, int]:
        if scoped_store(store).get(alert_id) is None:
            raise Refused(404, f"no alert {alert_id}")
        return jsonify([d.as_json() for d in seen_book().for_alert(alert_id)]), 200

    @api.get("/dispatches")
    def open_dispatches() -> tuple[Response, int]:
        community = request.args.get("community") or None
        if community is not None and community not in COMMUNITIES:
            raise Refused(400, f"unknown community {community!r}; use {', '.join(COMMUNITIES)}")
        now = time.time()
        return jsonify([{**d.as_json(), "overdue": d.overdue(now)}
                        for d in seen_book().open_dispatches(community)]), 200

    @api.get("/dispatches/<dispatch_id>/photos/<int:n>")
    def photo(dispatch_id: str, n: int) -> Response:
        d = seen_book().get(dispatch_id)
        p: Path | None = photo_path(settings.data_path, d, n - 1) if d else None
        if d is None or p is None or not p.is_file():
            raise Refused(404, f"no photo {n} of dispatch {dispatch_id}")
        resp = send_file(p, mimetype=d.photos[n - 1]["type"], max_age=0)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    @api.post("/alerts/<alert_id>/archive")
    def archive_alert(alert_id: str) -> tuple[Response, int]:
        if hidden(store, alert_id):
            raise Refused(404, f"no alert {alert_id}")
        doc = _json_body()
        who, note = _operator(doc, "archives")
        done = actions.must("archive", who, "api", alert_id=alert_id, cause=_text(doc, "cause") or "", note=note,
                            override=True if doc.get("override") is True else None)
        return jsonify(done), 200

    @api.get("/archive/pending")
    def archive_pending() -> tuple[Response, int]:
        community = request.args.get("community") or None
        if community is not None and community not in COMMUNITIES:
            raise Refused(400, f"unknown community {community!r}; use {', '.join(COMMUNITIES)}")
        view = seen_book()
        rows = pending(view.store, community)
        return jsonify({"count": len(rows), "causes": list(CAUSES), "alerts": [
            {**a.as_json(), "dispatches": [d.as_json() for d in view.for_alert(a.alert_id)]} for a in rows]}), 200

    def make_report() -> Report:
        period, community = period_from_args(request.args)
        scope = current_scope()
        if community is not None and not community_in(scope, community):
            raise Refused(404, f"no community {community} in this account's scope")
        names, devs = places.get()
        plans = plans_for_report(settings)
        if scope is not None:  # a scoped person's report counts the rounds of their communities only
            plans = replace(plans, plans={k: p for k, p in plans.plans.items() if scope.community(p.community)})
        rep = build_report(scoped_store(store), period, community, now=time.time(), compound_names=names,
                           device_places=devs, plans=plans)
        return scoped_report(rep, scope)

    @api.get("/report")
    def report_api() -> tuple[Response, int]:
        return jsonify(report_json(make_report())), 200

    def csv_response(rep: Report) -> Response:
        resp = Response(to_csv(rep), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="report-{rep.period.label}.csv"'
        return resp

    @api.get("/report.csv")
    def report_csv_api() -> Response:
        return csv_response(make_report())

    server.register_blueprint(api)

    # The pages (behind the dashboard's sign-in, like the console).
    @server.get("/report")
    def report_page() -> Response:
        try:
            rep = make_report()
        except Refused as exc:
            return Response(exc.message, status=exc.status, mimetype="text/plain")
        from dashboard.pages import page_nav  # the pages' own entries (the demo's inbox), as the shell shows them

        nav = report_nav(request.args, rep.period.label, page_nav(settings))
        page = to_html(rep, '<script src="/report/plotly.min.js"></script>', nav, css=REPORT_CSS,
                       chart_theme=REPORT_CHARTS)
        return Response(page.replace("</body>", "</main></body>", 1), mimetype="text/html")

    @server.get("/report.csv")
    def report_csv() -> Response:
        try:
            return csv_response(make_report())
        except Refused as exc:
            return Response(exc.message, status=exc.status, mimetype="text/plain")

    @server.get("/report/plotly.min.js")
    def report_plotly() -> Response:
        import plotly

        return send_file(Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                         mimetype="application/javascript", max_age=86400)

    register_field_page(server, settings, store, book, lambda: secret, places.get, actions)

