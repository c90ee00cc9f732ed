"""Verbs: `alerts` runs the rule engine; `alerts shelve|shelves|unshelve` manage shelving."""

from __future__ import annotations

import argparse
import json
import sys
import time

from core import procs
from core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="run the alert rule engine; shelve devices, compounds or rules")
    p.set_defaults(func=run_alerts)
    verbs = p.add_subparsers(dest="alerts_verb", metavar="{shelve,shelves,unshelve}")
    s = verbs.add_parser("shelve", help="shelve a device, compound or rule for a time (recorded, not notified)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--device")
    who.add_argument("--compound")
    who.add_argument("--rule")
    s.add_argument("--for", dest="duration", required=True, help="how long: 30m, 2h, 1d")
    s.add_argument("--reason", required=True, help="why (e.g. 燃气公司抢修主管)")
    s.add_argument("--by", required=True, help="who shelves it")
    s.set_defaults(func=run_shelve)
    ls = verbs.add_parser("shelves", help="list shelves (live ones, or --all)")
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_shelves)
    u = verbs.add_parser("unshelve", help="end a shelf now")
    u.add_argument("shelf_id", type=int)
    u.add_argument("--by", required=True)
    u.set_defaults(func=run_unshelve)


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.service import AlertService

    svc = AlertService(settings)
    procs.on_stop(svc.stop)
    svc.run_forever()
    return 0


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from alerts.store import AlertStore, store_path

    return AlertStore(store_path(settings.data_path))


def run_shelve(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.shelving import ShelfError, parse_duration, shelve

    scope, target = next((k, v) for k, v in (("device", args.device), ("compound", args.compound),
                                              ("rule", args.rule)) if v)
    store = _store(settings)
    try:
        shelf = shelve(store, scope, target, parse_duration(args.duration), args.reason, args.by)
    except ShelfError as exc:
        print(f"alerts shelve: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"shelf {shelf['shelf_id']}: {scope} {target} until {shelf['until_iso']} ({args.reason})")
    return 0


def run_shelves(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    rows = store.shelves(None if args.all else time.time())
    store.close()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for r in rows:
        end = f" ended {r['ended_at']} by {r['ended_by']}" if r["ended_at"] else ""
        print(f"{r['shelf_id']:5} {r['scope']:8} {r['target']:14} until {r['until_iso']}  "
              f"{r['by']}: {r['reason']}{end}")
    return 0


def run_unshelve(args: argparse.Namespace, settings: Settings) -> int:
    from core.timebase import now_iso

    store = _store(settings)
    ok = store.unshelve(args.shelf_id, args.by, now_iso())
    store.close()
    if not ok:
        print(f"alerts unshelve: no live shelf {args.shelf_id}", file=sys.stderr)
        return 1
    print(f"shelf {args.shelf_id} ended")
    return 0
