"""`smartcommunity simulate …` (telemetry, incidents, garbage, load) and `simulate score|list`."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from core import procs
from core.contract import COMMUNITIES, KINDS
from core.settings import Settings

EPILOG = """examples:
  smartcommunity simulate --duration 600 --inject gas_leak:G-000123@+30
  smartcommunity simulate --community yanhu --scenario power_outage@YH-02+60 --seed 7
  smartcommunity simulate --scenario water_main_burst --scenario bait_spike+120 --speed 2
  smartcommunity simulate --garbage 0.05 --duration 60
  smartcommunity simulate --rate 30000 --processes 2 --duration 30
  smartcommunity simulate score --truth var/groundtruth/run-….jsonl --alerts http://127.0.0.1:8050
  smartcommunity simulate list
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="publish simulated device telemetry and incidents",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--community", action="append", choices=sorted(COMMUNITIES), default=[],
                   help="only this community's devices (repeatable)")
    p.add_argument("--kind", action="append", choices=KINDS, default=[], help="only this kind (repeatable)")
    p.add_argument("--compound", action="append", default=[], help="only this compound (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="deterministic output for a given seed")
    p.add_argument("--speed", type=float, default=1.0, help="time warp: simulated seconds per wall second")
    p.add_argument("--start", help="simulated start time (ISO 8601 with offset; default now)")
    p.add_argument("--duration", type=float, help="simulated seconds to run (default: until Ctrl-C)")
    p.add_argument("--inject", action="append", default=[], metavar="NAME:DEVICE[@+S]",
                   help="incident at a device, e.g. gas_leak:G-000123@+30 (repeatable)")
    p.add_argument("--scenario", action="append", default=[], metavar="NAME_OR_FILE[@PLACE][+S]",
                   help="incident from the library or a YAML file, at a device or compound (repeatable)")
    p.add_argument("--truth", help="ground-truth JSONL file (default <SC_DATA_DIR>/groundtruth/…)")
    p.add_argument("--connections", type=int, default=2, help="shared MQTT connections (default 2)")
    p.add_argument("--per-device-connections", action="store_true",
                   help="one MQTT client per device with a real last will (small fleets only)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=None, help="telemetry QoS (status is always 1)")
    p.add_argument("--no-realism", action="store_true", help="no jitter, skew, duplicates, reordering or loss")
    p.add_argument("--offline-on-exit", action="store_true", help="publish offline status for all at exit")
    p.add_argument("--garbage", type=float, default=0.0, metavar="RATE",
                   help="fraction 0..1 of extra messages breaking the contract (every dead-letter reason)")
    p.add_argument("--rate", type=float, help="load mode: fixed total msg/s of pre-built telemetry")
    p.add_argument("--processes", type=int, default=2, help="load mode: publisher processes")
    p.add_argument("--devices-from", help="load mode: registry file (GeoJSON) to take device topics from")
    p.set_defaults(func=_simulate)
    verbs = p.add_subparsers(dest="sim_verb", metavar="{score,list}")
    s = verbs.add_parser("score", help="score alerts against a ground-truth file")
    s.add_argument("--truth", required=True, help="ground-truth JSONL written by a simulate run")
    s.add_argument("--alerts", required=True, help="JSON file of alerts, or the dashboard URL (GET /api/alerts)")
    s.add_argument("--token", help="bearer token for /api: a personal one (smartcommunity users token NAME) "
                   "or the service token (default SC_API_TOKEN)")
    s.add_argument("--json", action="store_true", help="print the score as JSON")
    s.set_defaults(func=_score)
    la = verbs.add_parser("list", help="list the incident library")
    la.set_defaults(func=_list)
    ev = sub.add_parser("eval", help="score the alert engine on the incident library like an alarm audit")
    ev.add_argument("--quick", action="store_true", help="a few cases only (a minute)")
    ev.add_argument("--case", action="append", default=[], help="only this case (repeatable)")
    ev.add_argument("--seed", type=int, default=1)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--split", metavar="SLUG,SLUG",
                    help="also run every case over two engines (these communities, and the rest) on one store, "
                         "as `alerts --communities` does, and check they raise exactly what one engine raises")
    ev.set_defaults(func=_eval)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.fleet import Realism
    from simulators.scenarios import ScenarioError
    from simulators.sim import SimOptions, simulate

    if not 0.0 <= args.garbage <= 1.0:
        print("simulate: --garbage must be between 0 and 1", file=sys.stderr)
        return 2
    if args.rate is not None:
        from simulators.load import run_load

        return run_load(settings, rate=args.rate, processes=args.processes, duration_s=args.duration or 10.0,
                        qos=args.qos or 0, devices_from=args.devices_from,
                        communities=args.community, kinds=args.kind)
    opts = SimOptions(
        communities=args.community, kinds=args.kind, compounds=args.compound, seed=args.seed,
        speed=args.speed, duration_s=args.duration, start_ms=_start_ms(args.start),
        inject=args.inject, scenarios=args.scenario, connections=args.connections,
        per_device=args.per_device_connections, qos=args.qos or 0,
        realism=Realism.off() if args.no_realism else Realism(), truth_file=args.truth,
        garbage=args.garbage, offline_on_exit=args.offline_on_exit,
    )
    stop = threading.Event()
    restore = procs.on_stop(stop.set)  # SIGTERM/SIGINT: stop publishing, still print the summary
    try:
        res = simulate(settings, opts, stop)
    except (ScenarioError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    finally:
        restore()
    st = res.stats
    print(f"published {st.published} messages {st.by_type} in {st.wall_s:.1f} s"
          + (f"; ground truth {res.truth_file}" if res.truth_file else ""))
    return 0 if st.errors == 0 else 1


def _start_ms(text: str | None) -> int | None:
    if not text:
        return None
    from core.validation import Rejected, parse_ts

    try:
        return parse_ts(text)
    except Rejected as exc:
        raise SystemExit(f"simulate: --start: {exc}") from None


def _score(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.score import fetch_alerts, format_score, read_truth, score

    alerts = fetch_alerts(args.alerts, token=args.token or settings.api_token)
    result = score(alerts, read_truth(args.truth))
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else format_score(result))
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.partition import PartitionError, parse_communities
    from simulators.evaluate import compare_split, format_table, run_all, summary

    try:
        split = parse_communities(args.split) if args.split else None
    except PartitionError as exc:
        print(f"smartcommunity eval: --split: {exc}", file=sys.stderr)
        return 2
    results = run_all(quick=args.quick, seed=args.seed, only=args.case or None)
    differ = compare_split(results, split, args.seed) if split else []
    if args.json:
        t = summary(results)
        print(json.dumps({"overall": t, "cases": [{"case": r.case.name, **{k: v for k, v in r.score.items()
                                                                          if k != "per_rule"}, "flaps": r.flaps,
                                                    "per_10min": r.per_window, "stale": len(r.stale),
                                                    "max_per_compound": r.max_per_compound} for r in results]},
                         ensure_ascii=False, indent=2, default=str))
    else:
        print(format_table(results))
    if split:
        tail = f"; differ: {', '.join(differ)}" if differ else ""
        print(f"split {','.join(sorted(split))} | the rest: two engines raised exactly what one raised in "
              f"{len(results) - len(differ)}/{len(results)} cases{tail}", file=sys.stderr if args.json else sys.stdout)
    return 0 if all(summary(results)["goals"].values()) and not differ else 1


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.scenarios import library, load_scenario

    for name in library():
        s = load_scenario(name)
        tag = " (bait)" if s.bait else ""
        exp: list[Any] = sorted({f"{x.rule}/{x.severity}" for x in s.expect if not x.optional})
        print(f"{name:22} {s.place:8} {s.kind:7} {s.duration_s:6.0f}s {s.title}{tag}  expects: {', '.join(exp) or '-'}")
    return 0
