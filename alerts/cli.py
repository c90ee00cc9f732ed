"""Verbs: `alerts` runs the rule engine; `alerts shelve|shelves|unshelve` manage shelving;
`notify test|check|status` for the notification channels; `patrols check` a patrol plans file;
`report` writes the period report;
`dispatch`, `resolve` and `archive` close the loop from a terminal. Every change is a command to the
running alert service (alerts/command/), as from the dashboard: the same close guard, the same audit
of who did it; with the service stopped they say so (exit 3) and change nothing."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from core import procs
from core.contract import KINDS
from core.settings import Settings

TEST_KINDS = ("wecom", "dingtalk", "webhook", "email", "sms")


DEFAULT_LEASE_S = 9.0  # a dead engine's partition taken over within 15 s: 9 s + 1 s poll + its start


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="run the alert rule engine; shelve devices, compounds or rules")
    p.add_argument("--communities", metavar="SLUG,SLUG",
                   help="run the engine over these communities only (e.g. yanling,yanhu); engines over "
                        "disjoint sets together raise what one engine over the street raises")
    p.add_argument("--standby", action="store_true",
                   help="take over this partition when its engine stops (a lease in the store; "
                        "SC_ALERTS_LEASE_S, default 9 s with --standby)")
    p.set_defaults(func=run_alerts)
    verbs = p.add_subparsers(dest="alerts_verb", metavar="{rules,shelve,shelves,unshelve,leases}")
    le = verbs.add_parser("leases", help="which process runs each alert partition, and for how long still")
    le.add_argument("--json", action="store_true")
    le.set_defaults(func=run_leases)
    rl = verbs.add_parser("rules", help="the rules in force: name (for --rule), title, severity, when it fires")
    rl.add_argument("--json", action="store_true")
    rl.set_defaults(func=run_rules)
    s = verbs.add_parser("shelve", help="shelve a device, compound, device kind or rule for a time, or every week "
                                        "in a window (recorded, not notified)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--device")
    who.add_argument("--compound")
    who.add_argument("--rule")
    who.add_argument("--kind", choices=KINDS, help="every device of a kind")
    s.add_argument("--for", dest="duration", help="how long: 30m, 2h, 1d; with --every, how long the window "
                                                  "recurs (default 90d, at most 366d)")
    s.add_argument("--every", help='a weekly maintenance window in Beijing time, e.g. "mon-fri 09:00-11:00", '
                                   '"sat,sun 22:00-06:00" (past midnight), "daily 01:00-03:00"')
    s.add_argument("--cron", help='a maintenance window that opens by a cron expression in Beijing time, e.g. '
                                  '"0 9 * * 1-5" (weekdays 09:00), lasting --duration each time')
    s.add_argument("--duration", dest="window_duration",
                   help="with --cron: how long each window lasts (30m, 2h, at most 7d)")
    s.add_argument("--reason", required=True, help="why (e.g. 燃气公司抢修主管)")
    s.add_argument("--by", required=True, help="who shelves it")
    s.add_argument("--approved-by", help="a second person's account (operator or admin), required to shelve a "
                                         "gas rule or device, or anything with an open red or gas alert")
    s.set_defaults(func=run_shelve)
    ls = verbs.add_parser("shelves", help="list shelves (live ones, or --all)")
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_shelves)
    u = verbs.add_parser("unshelve", help="end a shelf now")
    u.add_argument("shelf_id", type=int)
    u.add_argument("--by", required=True)
    u.set_defaults(func=run_unshelve)

    n = sub.add_parser("notify", help="notification channels: send a test message, check the files")
    nsub = n.add_subparsers(dest="notify_cmd", required=True)
    t = nsub.add_parser("test", help="send a test message through one channel, exactly as an alert would go")
    t.add_argument("--channel", required=True, choices=TEST_KINDS)
    t.add_argument("--url", required=True, help="the robot's / webhook's full URL, or smtp://host:port for email")
    t.add_argument("--secret", help="DingTalk signing secret (加签)")
    t.add_argument("--to", help="e-mail address (email), or a mobile to @-mention / text (wecom, dingtalk, sms)")
    t.add_argument("--from", dest="sender", help="e-mail sender address")
    t.set_defaults(func=run_notify_test)
    c = nsub.add_parser("check", help="check the roster and channels files (file:line: reason)")
    c.add_argument("--roster", help="roster file (default: SC_ALERTS_ROSTER_FILE or the bundled one)")
    c.add_argument("--channels", help="channels file (default: SC_ALERTS_CHANNELS_FILE)")
    c.set_defaults(func=run_notify_check)
    s = nsub.add_parser("status", help="each channel's cursor and pending notifications (JSON)")
    s.set_defaults(func=run_notify_status)
    pt = sub.add_parser("patrols", help="patrol plans (巡检): check a plans file")
    psub = pt.add_subparsers(dest="patrols_cmd", required=True)
    pc = psub.add_parser("check", help="check a patrol plans file against the roster and teams (file:line: reason)")
    pc.add_argument("file", nargs="?", help="plans file (default: SC_PATROLS_FILE or the bundled sample)")
    pc.set_defaults(func=run_patrols_check)
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

    rv = sub.add_parser("resolve", help="resolve an alert by hand (refused while the danger is still measured)")
    rv.add_argument("alert_id")
    rv.add_argument("--by", required=True, help="who resolves it")
    rv.add_argument("--note", help="what was done; with --override, the reason (required)")
    rv.add_argument("--override", action="store_true",
                    help="resolve although the latest reading is still in alarm (needs --note: the reason)")
    rv.set_defaults(func=run_resolve)

    a = sub.add_parser("archive", help="close out a resolved alert with a cause (归档), or list what is pending")
    a.add_argument("alert_id", nargs="?")
    a.add_argument("--cause", help="cause category (run with --pending to see them)")
    a.add_argument("--by", help="who archives")
    a.add_argument("--note")
    a.add_argument("--pending", action="store_true", help="list resolved red/orange alerts not archived yet")
    a.add_argument("--override", action="store_true",
                   help="archive although its device is still in alarm (needs --note: the reason)")
    a.set_defaults(func=run_archive)


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.partition import PartitionError, parse_communities

    try:
        communities = parse_communities(getattr(args, "communities", None))
    except PartitionError as exc:
        print(f"smartcommunity alerts: --communities: {exc}", file=sys.stderr)
        return 2
    ttl = settings.alerts_lease_s or (DEFAULT_LEASE_S if getattr(args, "standby", False) else 0.0)
    if ttl <= 0:
        return _run_engine(settings, communities, None)
    from alerts.lease import Lease
    from alerts.partition import suffix
    from alerts.store import open_store

    store = open_store(settings)
    lease = Lease(store, "alerts" + suffix(communities), ttl)
    try:
        undo = procs.on_stop(lease.give_up)
        if not lease.wait():
            return 0
        undo()
        return _run_engine(settings, communities, lease)
    finally:
        lease.release()  # also when the engine was refused: a standby elsewhere need not wait it out
        store.close()


def _run_engine(settings: Settings, communities: frozenset[str] | None, lease: Any) -> int:
    from alerts.configfile import ConfigError
    from alerts.service import AlertService

    try:
        svc = AlertService(settings, communities)
    except ConfigError as exc:
        print(f"smartcommunity alerts: refused:\n{exc}", file=sys.stderr)
        return 2
    procs.on_stop(svc.stop)
    if lease is not None:
        svc.lease = lease
        lease.keep()
    svc.run_forever()
    return 0


def run_leases(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.store import open_store

    store = open_store(settings)
    try:
        rows = store.leases()
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print("no leases: every engine runs without one (SC_ALERTS_LEASE_S unset)")
    for r in rows:
        left = r["expires"] - r["now"]
        state = f"held, {left:.1f} s left" if left > 0 else f"free (ran out {-left:.0f} s ago)"
        print(f"{r['name']:<24} {r['holder']:<40} epoch {r['epoch']:<4} {state}")
    return 0


def sample_alert(settings: Settings) -> tuple[object, object]:
    """A realistic alert on the first gas device of the registry, with its surroundings."""
    from alerts.context import Surroundings
    from alerts.message import Places
    from core.contract import Alert
    from core.registry import system_registry
    from core.timebase import now_iso

    reg = system_registry(settings)
    dev = next((d for d in reg.values() if d.kind == "gas"), None) or next(iter(reg.values()))
    try:
        nearby = Surroundings(settings.alerts_nearby_radius_m).around(dev.lon, dev.lat)
    except Exception:
        nearby = None
    now = now_iso()
    alert = Alert(alert_id="a-test0000000000", rule="gas_lel_high", severity="red", state="active",
                  community=dev.community, compound_id=dev.compound_id, device_id=dev.device_id, kind="gas",
                  metric="lel_pct", value=31.2, threshold=25, lon=dev.lon, lat=dev.lat, started_at=now,
                  updated_at=now, message="燃气浓度 31.2 %LEL ≥ 25 %LEL", nearby=nearby, escalation_tier=1)
    return alert, Places(reg.get).of(dev.community, dev.compound_id, dev.device_id)


def run_notify_test(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.channels.base import DeliveryError, Target
    from alerts.channels.config import make_channel
    from alerts.message import compose
    from alerts.roster import Person

    kind = "sms" if args.channel == "sms" else args.channel
    if kind == "email" and not args.to:
        print("notify test: --to ADDRESS is required for email", file=sys.stderr)
        return 2
    opts = {"from": args.sender} if kind == "email" and args.sender else {}
    try:
        ch = make_channel(Target(id=f"test-{kind}", kind=kind, url=args.url, secret=args.secret, options=opts),
                          settings.notify_timeout_s)
    except ValueError as exc:
        print(f"notify test: {exc}", file=sys.stderr)
        return 2
    people = []
    if args.to:
        people = [Person(name="测试接收人", email=args.to)] if kind == "email" else [
            Person(name="测试接收人", phone=args.to, wecom=args.to, dingtalk=args.to)]
    alert, place = sample_alert(settings)
    message = compose(alert, "test", place, public_url=settings.public_base_url)  # type: ignore[arg-type]
    try:
        ch.send(message, people, alert=alert.as_json())  # type: ignore[attr-defined]
    except DeliveryError as exc:
        print(f"notify test: {kind} not delivered: {exc.text}", file=sys.stderr)
        return 1
    finally:
        ch.close()
    print(f"notify test: delivered through {kind} to {args.url.split('?')[0]}")
    return 0


def run_notify_check(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.channels.config import parse_channels
    from alerts.configfile import ConfigError
    from alerts.roster import BUNDLED_ROSTER, parse_roster

    roster = Path(args.roster or settings.alerts_roster_file or BUNDLED_ROSTER)
    channels = args.channels or settings.alerts_channels_file
    bad = 0
    for path, parse in ((roster, parse_roster), (Path(channels) if channels else None, parse_channels)):
        if path is None:
            continue
        try:
            parse(path)  # type: ignore[operator]
            print(f"{path}: ok")
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            bad += 1
    return 1 if bad else 0


def run_patrols_check(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.configfile import ConfigError
    from alerts.patrols import parse_plans, plans_path

    path = Path(args.file) if args.file else plans_path(settings.patrols_file)
    try:
        plans = parse_plans(path, roster_file=settings.alerts_roster_file, teams_file=settings.dispatch_teams_file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{path}: ok, {len(plans.plans)} plans, "
          f"{sum(len(p.checkpoints) for p in plans)} checkpoints")
    return 0


def run_notify_status(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.delivery import cursor_dir, outbox_path
    from alerts.store import sqlite_file
    from alerts.store.outbox import table_status

    if sqlite_file(settings) is None:  # on PostgreSQL the outbox and cursors are the store's
        print(orjson.dumps(table_status(str(settings.store_url)), option=orjson.OPT_INDENT_2).decode())
        return 0
    out: dict[str, object] = {"outbox": str(outbox_path(settings.data_path))}
    size = outbox_path(settings.data_path).stat().st_size if outbox_path(settings.data_path).exists() else 0
    out["outbox_bytes"] = size
    cursors = {}
    for f in sorted(cursor_dir(settings.data_path).glob("*.json")):
        try:
            d = orjson.loads(f.read_bytes())
            cursors[f.stem] = {"behind_bytes": size - int(d["offset"]), "finished_ahead": len(d.get("done", []))}
        except (OSError, ValueError, KeyError):
            cursors[f.stem] = {"error": "unreadable"}
    out["cursors"] = cursors
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
def run_report(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.patrols import plans_for_report
    from alerts.report import Period, build_report, place_names, plotly_inline, to_csv, to_html
    from alerts.store import open_store
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
    store = open_store(settings)
    try:
        names, devices = place_names(settings)
        rep = build_report(store, period, args.community, now=time.time(), compound_names=names,
                           device_places=devices, plans=plans_for_report(settings))
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
    ans = _command(settings, "dispatch", args.by, alert_id=args.alert_id, team=team.team_id,
                   member=member.member_id if member else None,
                   deadline=iso(time.time() + args.deadline_min * 60), note=args.note)
    if ans is None:
        return 3
    if not ans.ok:
        print(f"smartcommunity dispatch: {ans.body.get('error')}", file=sys.stderr)
        return 1
    print(f"{ans.body['dispatch_id']}\t{ans.body['assignee']}\t{ans.body['link']}")
    return 0


def run_archive(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.archive import pending
    from alerts.dispatch import CAUSES

    if args.pending or not args.alert_id:
        store = _store(settings)
        try:
            for a in pending(store):
                print(f"{a.alert_id}\t{a.severity}\t{a.community}\t{a.started_at}\t{a.message}")
        finally:
            store.close()
        print("causes: " + " | ".join(CAUSES), file=sys.stderr)
        return 0
    if not args.cause or not args.by:
        print("smartcommunity archive: --cause and --by are required", file=sys.stderr)
        return 2
    ans = _command(settings, "archive", args.by, alert_id=args.alert_id, cause=args.cause, note=args.note,
                   override=True if args.override else None)
    if ans is None:
        return 3
    if not ans.ok:
        print(f"smartcommunity archive: {ans.body.get('error')}", file=sys.stderr)
        return 1
    print(f"{args.alert_id} archived by {ans.body['archived_by']}: {ans.body['cause']}")
    return 0


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from alerts.store import open_store

    return open_store(settings)


def run_resolve(args: argparse.Namespace, settings: Settings) -> int:
    """A command to the alert service, which asks the same close guard as the /api and the console
    (alerts/guard.py) and publishes the change."""
    ans = _command(settings, "resolve", args.by, alert_id=args.alert_id, note=args.note,
                   override=True if args.override else None)
    if ans is None:
        return 3
    body = ans.body
    if ans.status != 200 or not body.get("alert"):
        print(f"smartcommunity resolve: {body.get('error')}", file=sys.stderr)
        return 1
    live = body.get("live")
    print(f"{args.alert_id} resolved by {body['alert']['resolved_by']}"
          + (f" OVER the live reading {live['value']} ({live['at']}): {args.note}" if live else ""))
    return 0


def _command(settings: Settings, verb: str, actor: str | None, **args: object):  # type: ignore[no-untyped-def]
    """Send one command to the running alert service; None (and the reason on stderr) if it is down."""
    from alerts.command import ServiceDown
    from alerts.command.client import command

    try:
        return command(settings, verb, actor, "cli", **args)
    except ServiceDown as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return None


def run_shelve(args: argparse.Namespace, settings: Settings) -> int:
    """A command to the alert service: it checks the shelf (a life-safety one needs a second person's
    approval, alerts/shelving.py) and applies it at once."""
    from alerts.shelving import MAX_SERIES_S, SERIES_S, ShelfError, parse_cron, parse_duration, parse_every

    scope, target = next((k, v) for k, v in (("device", args.device), ("compound", args.compound),
                                              ("rule", args.rule), ("kind", args.kind)) if v)
    try:
        if args.cron and args.every:
            raise ShelfError("give either a weekly window (--every) or a cron window (--cron), not both")
        if bool(args.cron) != bool(args.window_duration):
            raise ShelfError("a cron window needs both --cron \"0 9 * * 1-5\" and --duration 2h")
        if args.cron:
            every = parse_cron(args.cron, args.window_duration).text()
            seconds = parse_duration(args.duration, MAX_SERIES_S) if args.duration else SERIES_S
        elif args.every:
            every = parse_every(args.every).text()
            seconds = parse_duration(args.duration, MAX_SERIES_S) if args.duration else SERIES_S
        elif args.duration:
            every, seconds = None, parse_duration(args.duration)
        else:
            raise ShelfError("say how long (--for 2h) or give a weekly window (--every \"mon-fri 09:00-11:00\")")
    except ShelfError as exc:
        print(f"alerts shelve: {exc}", file=sys.stderr)
        return 2
    ans = _command(settings, "shelve", args.by, scope=scope, target=target, reason=args.reason, seconds=seconds,
                   approved_by=args.approved_by, every=every)
    if ans is None:
        return 3
    if not ans.ok:
        print(f"alerts shelve: {ans.body.get('error')}", file=sys.stderr)
        return 2
    shelf = ans.body
    extra = f"; LIFE-SAFETY, approved by {shelf['approved_by']}: red alerts are still told" \
        if shelf["life_safety"] else ""
    window = f" {_window(shelf)}" if shelf.get("every") else ""
    print(f"shelf {shelf['shelf_id']}: {scope} {_named(scope, target)}{window} until {shelf['until_iso']} "
          f"({args.reason}){extra}")
    return 0


def run_rules(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.rules import RuleError, load_ruleset
    from core.contract import KIND_LABEL
    from core.severity import label

    try:
        ruleset = load_ruleset(Path(settings.alerts_rules_file) if settings.alerts_rules_file else None)
    except RuleError as exc:
        print(f"alerts rules: {exc}", file=sys.stderr)
        return 2
    rules = ruleset.rules
    if args.json:
        print(json.dumps([{"name": r.name, "title": r.label, "severity": r.severity, "description": r.description}
                          for r in rules], ensure_ascii=False))
        return 0
    for r in rules:
        print(f"{r.name:22} {label(r.severity)} {r.label}：{r.description}")
    by_name = {r.name: r for r in rules}
    place = {"compound_id": "同一小区", "community": "同一社区"}
    for i in ruleset.inhibits:  # alerts/inhibit.py: which open alert mutes which
        src = "、".join(by_name[n].label for n in sorted(i.source.rules)) or "、".join(sorted(i.source.kinds))
        tgt = "、".join(by_name[n].label for n in sorted(i.target.rules))
        kinds = f"({'、'.join(KIND_LABEL.get(k, k) for k in sorted(i.target.kinds))}设备)" if i.target.kinds else ""
        where = "且".join(place[e] for e in i.equal)
        print(f"抑制 {i.name}: 「{src}」未解除时, {where}的「{tgt}」{kinds} 记录, 不通知")
    return 0


def _named(scope: str, target: str) -> str:
    """A shelved rule with its title beside its name (the name is what `--rule` takes)."""
    if scope != "rule":
        return target
    from alerts.rules import title_of

    return f"{target}({title_of(target)})"


def _window(shelf: dict[str, Any]) -> str:
    """A recurring shelf's window as written and in words: every mon-fri 09:00-11:00 (每周一至周五 09:00–11:00)."""
    from alerts.shelving import parse_every

    return f"every {shelf['every']} ({parse_every(shelf['every']).words()})"


def run_shelves(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    rows = store.shelves(None if args.all else time.time())
    store.close()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for r in rows:
        end = f" ended {r['ended_at']} by {r['ended_by']}" if r["ended_at"] else ""
        safety = f" [生命安全·批准 {r['approved_by']}]" if r.get("life_safety") else ""
        window = f" {_window(r)}" if r.get("every") else ""
        print(f"{r['shelf_id']:5} {r['scope']:8} {_named(r['scope'], r['target']):14}{window} until {r['until_iso']}  "
              f"{r['by']}: {r['reason']}{safety}{end}")
    return 0


def run_unshelve(args: argparse.Namespace, settings: Settings) -> int:
    ans = _command(settings, "unshelve", args.by, shelf_id=args.shelf_id)
    if ans is None:
        return 3
    if not ans.ok:
        print(f"alerts unshelve: {ans.body.get('error')}", file=sys.stderr)
        return 1
    print(f"shelf {args.shelf_id} ended")
    return 0
