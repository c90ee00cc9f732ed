"""Verbs: `alerts` runs the rule engine; `report` writes the period report; `dispatch` and
`archive` close the loop from a terminal (the same store steps as the dashboard's /api)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core import procs
from core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="run the alert rule engine")
    p.set_defaults(func=run_alerts)

    r = sub.add_parser("report", help="write the period report (HTML with charts, and CSV) per community",
                       description="Alerts by kind and severity, times to acknowledge / arrive / resolve "
                                   "(median, p90), alerts by compound, repeat devices, open dispatches.")
    r.add_argument("--month", help="a month in Beijing time, e.g. 2026-11 (default: this month)")
    r.add_argument("--from", dest="first", help="first day YYYY-MM-DD (with --to, instead of --month)")
    r.add_argument("--to", dest="last", help="last day YYYY-MM-DD, inclusive")
    r.add_argument("--community", help="only this community")
    r.add_argument("--out", help="folder to write into (default SC_DATA_DIR/reports)")
    r.set_defaults(func=run_report)

    d = sub.add_parser("dispatch", help="dispatch an alert to a team or person (派单); prints the field link")
    d.add_argument("alert_id")
    d.add_argument("--team", required=True, help="team id from the teams file (see --list)")
    d.add_argument("--member", help="one member of the team (default: the whole team is told)")
    d.add_argument("--deadline-min", type=float, default=30.0, help="minutes to accept (default 30)")
    d.add_argument("--by", required=True, help="who dispatches (the operator's name)")
    d.add_argument("--note", help="a note for the assignee")
    d.set_defaults(func=run_dispatch)

    a = sub.add_parser("archive", help="close out a resolved alert with a cause (归档), or list what is pending")
    a.add_argument("alert_id", nargs="?")
    a.add_argument("--cause", help="cause category (run with --pending to see them)")
    a.add_argument("--by", help="who archives")
    a.add_argument("--note")
    a.add_argument("--pending", action="store_true", help="list resolved red/orange alerts not archived yet")
    a.set_defaults(func=run_archive)


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.service import AlertService

    svc = AlertService(settings)
    procs.on_stop(svc.stop)
    svc.run_forever()
    return 0


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.report import Period, build_report, place_names, plotly_inline, to_csv, to_html
    from alerts.store import AlertStore, store_path
    from core.contract import COMMUNITIES

    try:
        if args.first or args.last:
            if not (args.first and args.last):
                raise ValueError("give both --from and --to")
            period = Period.days(args.first, args.last)
        else:
            period = Period.month(args.month) if args.month else Period.this_month()
        if args.community and args.community not in COMMUNITIES:
            raise ValueError(f"unknown community {args.community!r}; use {', '.join(COMMUNITIES)}")
    except ValueError as exc:
        print(f"smartcommunity report: {exc}", file=sys.stderr)
        return 2
    store = AlertStore(store_path(settings.data_path))
    try:
        names, devices = place_names(settings)
        rep = build_report(store, period, args.community, now=time.time(), compound_names=names,
                           device_places=devices)
    finally:
        store.close()
    out = Path(args.out) if args.out else settings.data_path / "reports"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"report-{period.label}" + (f"-{args.community}" if args.community else "")
    csv_path, html_path = out / f"{stem}.csv", out / f"{stem}.html"
    csv_path.write_text(to_csv(rep), encoding="utf-8")
    html_path.write_text(to_html(rep, plotly_inline()), encoding="utf-8")
    print(f"{html_path}\n{csv_path}")
    return 0


def run_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.dispatch import DispatchBook, Refused, link_for
    from alerts.report import place_names
    from alerts.store import AlertStore, store_path
    from alerts.teams import TeamsError, load_teams
    from core.timebase import iso

    try:
        teams = load_teams(settings.dispatch_teams_file)
    except TeamsError as exc:
        print(f"smartcommunity dispatch: {exc}", file=sys.stderr)
        return 2
    team = teams.get(args.team)
    if team is None:
        print(f"smartcommunity dispatch: unknown team {args.team!r}; use {', '.join(teams.teams)}", file=sys.stderr)
        return 2
    member = team.member(args.member) if args.member else None
    if args.member and member is None:
        print(f"smartcommunity dispatch: team {team.team_id} has no member {args.member!r}", file=sys.stderr)
        return 2
    store = AlertStore(store_path(settings.data_path))
    try:
        now = time.time()
        book = DispatchBook(store, settings, places=lambda: place_names(settings))
        d = book.create(args.alert_id, team, member, iso(now + args.deadline_min * 60), args.by, args.note, now)
    except Refused as exc:
        print(f"smartcommunity dispatch: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{d.dispatch_id}\t{d.assignee}\t{link_for(settings, d)}")
    return 0


def run_archive(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.archive import archive, pending
    from alerts.dispatch import CAUSES, Refused
    from alerts.store import AlertStore, store_path
    from core.timebase import now_iso

    store = AlertStore(store_path(settings.data_path))
    try:
        if args.pending or not args.alert_id:
            for a in pending(store):
                print(f"{a.alert_id}\t{a.severity}\t{a.community}\t{a.started_at}\t{a.message}")
            print("causes: " + " | ".join(CAUSES), file=sys.stderr)
            return 0
        if not args.cause or not args.by:
            print("smartcommunity archive: --cause and --by are required", file=sys.stderr)
            return 2
        done = archive(store, args.alert_id, args.by, args.cause, args.note, now_iso())
    except Refused as exc:
        print(f"smartcommunity archive: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{done.alert_id} archived by {done.archived_by}: {done.cause}")
    return 0
