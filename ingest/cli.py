"""Verbs: `ingest [--workers N]`, `deadletter list [--json]`."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys

from core import procs
from core.settings import Settings, load_settings
from ingest.deadletter import DeadLetterStore, store_path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ingest", help="run the MQTT → InfluxDB ingestor")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing one MQTT 5 shared subscription ($share/ingest/...)")
    p.set_defaults(func=run_ingest)

    d = sub.add_parser("deadletter", help="the dead-lettered messages")
    dsub = d.add_subparsers(dest="action", required=True)
    lst = dsub.add_parser("list", help="list dead letters, newest first")
    lst.add_argument("--json", action="store_true", help="a JSON array")
    lst.add_argument("--limit", type=int, default=None)
    lst.add_argument("--reason", default=None)
    lst.set_defaults(func=list_deadletters)


def _run_worker(worker: int, workers: int) -> None:
    from ingest.service import Ingestor

    settings = load_settings()
    ing = Ingestor(settings, worker=worker, workers=workers)
    procs.on_stop(ing.stop)
    ing.run_forever()


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers <= 1:
        _run_worker(0, 1)
        return 0
    ctx = multiprocessing.get_context("spawn")
    workers = [procs.process(ctx, _run_worker, (i, args.workers), name=f"ingest-{i}")
               for i in range(args.workers)]

    def _stop() -> None:
        for p in workers:
            if p.is_alive():
                p.terminate()

    procs.on_stop(_stop)
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    return max((p.exitcode or 0) for p in workers)


def list_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    path = store_path(settings.data_path)
    store = DeadLetterStore(path, settings.deadletter_max)
    try:
        rows = store.list(limit=args.limit, reason=args.reason)
    finally:
        store.close()
    if args.json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        for r in rows:
            print(f"{r['received_at']}  {r['reason']:<18} {r['topic']}  {r['payload'][:80]}")
        print(f"{len(rows)} dead letters", file=sys.stderr)
    return 0
