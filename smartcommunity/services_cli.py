"""Verbs: `up`, `demo`, `services start|stop|status`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from core.settings import Settings
from smartcommunity.services import ServiceError, port_open, start_missing
from smartcommunity.supervisor import Supervisor

PARTS: list[tuple[str, list[str]]] = [
    ("ingest", ["ingest"]),
    ("alerts", ["alerts"]),
    ("dashboard", ["dashboard"]),
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("up", help="run ingest, alerts and the dashboard (starting local services)")
    up.set_defaults(func=run_up)

    demo = sub.add_parser("demo", help="`up` plus the simulators, with a gas leak injected")
    demo.add_argument("--leak-after", type=float, default=45.0,
                      help="seconds after start to inject the demo gas leak (default 45)")
    demo.add_argument("--no-leak", action="store_true", help="no injected incident")
    demo.set_defaults(func=run_demo)

    story = sub.add_parser("demo-story", help="(run by `demo` only) the simulated staff's scripted walk-through "
                                              "of the demo leak: dispatch, feedback, archive")
    story.add_argument("--community", default=DEMO_LEAK_COMMUNITY)
    story.add_argument("--pace", type=float, default=10.0, help="seconds between steps (default 10)")
    story.set_defaults(func=run_demo_story)

    svc = sub.add_parser("services", help="local Mosquitto / InfluxDB, detached from any terminal")
    ssub = svc.add_subparsers(dest="action", required=True)
    ssub.add_parser("start", help="start whichever of the two does not answer").set_defaults(
        func=services_start)
    ssub.add_parser("stop", help="stop the services `services start` started").set_defaults(
        func=services_stop)
    st = ssub.add_parser("status", help="which services answer, and which we started")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=services_status)


def _supervise(settings: Settings, parts: list[tuple[str, list[str]]]) -> int:
    try:
        return Supervisor(settings, parts).run()
    except ServiceError as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 1


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    return _supervise(settings, PARTS)


DEMO_LEAK_COMMUNITY = "lanshanjun"


def demo_parts(settings: Settings, leak_after_s: float | None) -> list[tuple[str, list[str]]]:
    """The simulator for every registry device, plus one kitchen gas leak in 蓝山郡 for the demo."""
    from core.registry import system_registry

    argv = ["simulate"]
    if leak_after_s is not None:
        registry = system_registry(settings)
        gas = sorted(d.device_id for d in registry.values()
                     if d.kind == "gas" and d.community == DEMO_LEAK_COMMUNITY)
        if gas:
            argv += ["--inject", f"gas_leak:{gas[0]}@+{leak_after_s:g}"]
            # 【演示】the simulated staff walk that leak's alert through dispatch, feedback and archive.
            return [*PARTS, ("simulate", argv), ("demo-story", ["demo-story", "--community", DEMO_LEAK_COMMUNITY])]
    return [*PARTS, ("simulate", argv)]


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    return _supervise(settings, demo_parts(settings, None if args.no_leak else args.leak_after))


def run_demo_story(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from core import procs
    from smartcommunity.demo_story import DemoStory

    stop = threading.Event()
    procs.on_stop(stop.set)
    story = DemoStory(settings, args.community, pace_s=args.pace, stop=stop)
    try:
        story.run()
        stop.wait()  # done: stay until the demo stops (the supervisor restarts a part that exits)
    finally:
        story.close()
    return 0


def _pidfile(settings: Settings) -> Path:
    return settings.data_path / "run" / "services.json"


def _started(settings: Settings) -> dict[str, dict[str, int]]:
    """The services `services start` started: name → pid and port."""
    pf = _pidfile(settings)
    return json.loads(pf.read_text()) if pf.exists() else {}


def services_start(args: argparse.Namespace, settings: Settings) -> int:
    try:
        started = start_missing(settings, detached=True)
    except ServiceError as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 1
    pf = _pidfile(settings)
    pf.parent.mkdir(parents=True, exist_ok=True)
    known = _started(settings)
    for s in started:
        known[s.spec.name] = {"pid": s.proc.pid, "port": s.url.port}
        print(f"started {s.spec.name} on 127.0.0.1:{s.url.port} (pid {s.proc.pid})")
    pf.write_text(json.dumps(known))
    if not started:
        print("both services already answer; nothing started")
    return 0


def services_stop(args: argparse.Namespace, settings: Settings) -> int:
    known = _started(settings)
    for name, info in known.items():
        try:
            os.kill(info["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(150):
            try:
                os.kill(info["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        print(f"stopped {name} (pid {info['pid']})")
    _pidfile(settings).unlink(missing_ok=True)
    return 0


def services_status(args: argparse.Namespace, settings: Settings) -> int:
    known = _started(settings)
    out = {}
    for name, url in (("mosquitto", settings.mqtt), ("influxdb", settings.influx)):
        out[name] = {
            "url": f"{url.host}:{url.port}",
            "answers": port_open(url.host, url.port),
            "started_by_us": name in known,
        }
    if args.json:
        print(json.dumps(out))
    else:
        for name, st in out.items():
            state = "answers" if st["answers"] else "DOWN"
            ours = " (started by smartcommunity)" if st["started_by_us"] else ""
            print(f"{name:<10} {st['url']:<22} {state}{ours}")
    return 0 if all(st["answers"] for st in out.values()) else 3
