"""Verbs: `up`, `demo`, `services start|stop|status|run`."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

from core import procs
from core.settings import Settings
from smartcommunity.services import ServiceError, free_port, port_open, start_missing
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
    story.add_argument("--after", type=float, default=None,
                       help="seconds after the leak's alert before the first step (default SC_DEMO_RESPONDERS_AFTER_S)")
    story.set_defaults(func=run_demo_story)

    inbox = sub.add_parser("demo-inbox", help="(run by `demo` only) the local receiver standing in for the WeCom "
                                              "and DingTalk robots and the SMS gateway (SC_DEMO_INBOX_PORT)")
    inbox.set_defaults(func=run_demo_inbox)

    svc = sub.add_parser("services", help="local Mosquitto / InfluxDB, detached from any terminal")
    ssub = svc.add_subparsers(dest="action", required=True)
    ssub.add_parser("start", help="start whichever of the two does not answer").set_defaults(
        func=services_start)
    ssub.add_parser("stop", help="stop the services `services start` started").set_defaults(
        func=services_stop)
    st = ssub.add_parser("status", help="which services answer, and which we started")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=services_status)
    run = ssub.add_parser("run", help="run one of them in the foreground, configured as `up` does (for systemd)")
    run.add_argument("name", choices=("mosquitto", "influxdb"))
    run.set_defaults(func=services_run)


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
    """The simulator for every registry device, plus one kitchen gas leak in 蓝山郡 for the demo, and
    the local inbox of the demo's notifications when it has one (SC_DEMO_INBOX_PORT)."""
    inbox = [("demo-inbox", ["demo-inbox"])] if settings.demo_inbox_port else []
    return [*inbox, *_demo_parts(settings, leak_after_s)]


def _demo_parts(settings: Settings, leak_after_s: float | None) -> list[tuple[str, list[str]]]:
    from core.registry import system_registry

    # Secure: the fleet publishes as the one svc.simulator account, and an account has one connection.
    argv = ["simulate", "--connections", "1"] if settings.secure else ["simulate"]
    if leak_after_s is not None:
        registry = system_registry(settings)
        gas = sorted(d.device_id for d in registry.values()
                     if d.kind == "gas" and d.community == DEMO_LEAK_COMMUNITY)
        if gas:
            argv += ["--inject", f"gas_leak:{gas[0]}@+{leak_after_s:g}"]
            if settings.demo_responders_after_s > 0:
                # 【演示】the simulated staff walk that leak's alert through dispatch, feedback and archive,
                # after a visitor has had SC_DEMO_RESPONDERS_AFTER_S to act first (0: no simulated staff).
                story = ["demo-story", "--community", DEMO_LEAK_COMMUNITY,
                         "--after", f"{settings.demo_responders_after_s:g}"]
                return [*PARTS, ("simulate", argv), ("demo-story", story)]
    return [*PARTS, ("simulate", argv)]


def secure_demo_settings(settings: Settings, environ: dict[str, str] | None = None) -> Settings:
    """The demo runs secure (issue 12) unless SC_SECURE says otherwise: it provisions the registered
    devices, the services' accounts and the simulator's account that publishes as the fleet."""
    env = os.environ if environ is None else environ
    said = "SC_SECURE" in env
    if settings.config:
        with open(settings.config, "rb") as fh:
            said = said or "secure" in tomllib.load(fh)
    if said and not settings.secure:
        return settings  # turned off on purpose
    settings = replace(settings, secure=True)
    from core.registry import ensure_registry, load_registry
    from security.broker import provision

    res = provision(settings, dict(load_registry(ensure_registry(settings)).items()), simulator=True)
    print(f"smartcommunity demo: security on (SC_SECURE=1): {len(res.issued) + len(res.kept)} devices have "
          f"broker accounts (new credentials in {res.out_dir}); TLS on port {settings.mqtt_tls_port}, "
          f"CA {settings.ca_path}", file=sys.stderr, flush=True)
    return settings


DEMO_ACCOUNTS = (("duty", "值班员（演示账号）", "operator"), ("admin", "管理员（演示账号）", "admin"))


def demo_accounts_path(settings: Settings) -> Path:
    return settings.data_path / "demo-accounts.txt"


def demo_accounts(settings: Settings) -> str:
    """The demo signs in like a deployment: with no staff account yet, it makes a duty officer
    (operator) and an admin with generated passwords, and a wall display link, kept in
    SC_DATA_DIR/demo-accounts.txt (0600). Returns what to print: that file's text."""
    import secrets

    from core.staff import open_accounts
    from dashboard.audit import AuditLog, audit_path
    from dashboard.sessions import open_sessions

    path = demo_accounts_path(settings)
    accounts = open_accounts(settings)
    if accounts.any():
        return path.read_text(encoding="utf-8") if path.exists() else (
            "smartcommunity demo: staff accounts exist; sign in with yours (smartcommunity users list)\n")
    base = settings.public_base_url
    lines = [f"smartcommunity demo: sign in at {base}/ as"]
    audit = AuditLog(audit_path(settings.data_path))
    for username, name, role in DEMO_ACCOUNTS:
        password = secrets.token_urlsafe(12)
        accounts.add(username, name, password, role=role)
        audit.record("account.add", actor="demo", via="cli", target=username, role=role)
        lines.append(f"  {username} / {password}   ({name}, {role})")
    store = open_sessions(settings)
    try:
        link_id, token = store.new_link("演示大屏")
    finally:
        store.close()
    audit.record("display-link.create", actor="demo", via="cli", target=link_id, label="演示大屏")
    lines.append(f"wall display (read-only, no typing): {base}/display/{token}")
    lines.append(f"(kept in {path}; more accounts: smartcommunity users add NAME --role operator)")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return text


def demo_sign_in_text(settings: Settings, terminal: bool) -> str:
    """What the demo prints at start: the accounts with their passwords on a terminal; when the output
    goes to a log, the passwords and the display link stay in their 0600 file only."""
    text = demo_accounts(settings)
    if not terminal:
        text = re.sub(r"^(  \S+ / )\S+", rf"\g<1>(password in {demo_accounts_path(settings)})", text, flags=re.M)
        text = re.sub(r"/display/\S+", "/display/… (in the same file)", text)
    return text


def demo_inbox_settings(settings: Settings) -> tuple[Settings, str]:
    """The demo's WeCom, DingTalk and SMS channels go to its local inbox (alerts/inbox.py) on a free
    loopback port, unless channels of one's own are configured. Returns the settings and what to say."""
    if settings.alerts_channels_file or settings.alerts_webhook_url:
        return settings, "smartcommunity demo: notifications go to the configured channels (no demo inbox)\n"
    from alerts.inbox import demo_channels

    port = settings.demo_inbox_port or free_port()
    path = demo_channels(settings.data_path, port)
    settings = replace(settings, demo_inbox_port=port, alerts_channels_file=str(path))
    return settings, (f"notifications (WeCom, DingTalk, SMS) are kept in a local inbox: "
                      f"{settings.public_base_url}/inbox\n")


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    settings = secure_demo_settings(settings)
    settings, said = demo_inbox_settings(settings)
    print(demo_sign_in_text(settings, sys.stderr.isatty()) + said, end="", file=sys.stderr, flush=True)
    if not args.no_leak:
        from smartcommunity.demo_story import provision_story

        provision_story(settings)  # the scripted staff act through /api with their own tokens
    return _supervise(settings, demo_parts(settings, None if args.no_leak else args.leak_after))


def run_demo_story(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from core import procs
    from smartcommunity.demo_story import DemoStory

    stop = threading.Event()
    procs.on_stop(stop.set)
    after = settings.demo_responders_after_s if args.after is None else args.after
    story = DemoStory(settings, args.community, pace_s=args.pace, stop=stop, after_s=after)
    try:
        story.run()
        stop.wait()  # done: stay until the demo stops (the supervisor restarts a part that exits)
    finally:
        story.close()
    return 0


def run_demo_inbox(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from alerts.inbox import serve
    from core import procs

    if not settings.demo_inbox_port:
        print("smartcommunity demo-inbox: SC_DEMO_INBOX_PORT is not set", file=sys.stderr)
        return 2
    stop = threading.Event()
    procs.on_stop(stop.set)
    serve(settings, stop)
    return 0


def _pidfile(settings: Settings) -> Path:
    return settings.data_path / "run" / "services.json"


def _started(settings: Settings) -> dict[str, dict[str, int]]:
    """The services `services start` started: name → pid and port."""
    pf = _pidfile(settings)
    return json.loads(pf.read_text()) if pf.exists() else {}


def services_run(args: argparse.Namespace, settings: Settings) -> int:
    """Write the service's config as `up` does and run it in this process's place (its output to our
    stderr: the journal under systemd). InfluxDB under SC_SECURE is run as a child instead, so its
    users can be made once it answers."""
    from smartcommunity import services as svcs

    try:
        if args.name == "mosquitto":
            argv, _ = svcs.prepare_mosquitto(settings)
            os.execv(argv[0], argv)
        argv, _ = svcs.prepare_influxdb(settings)
        if not settings.secure:
            os.execv(argv[0], argv)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=procs.preexec())
        svc = svcs.RunningService(svcs.INFLUXDB, proc, settings.influx, Path("/dev/stderr"))
        procs.on_stop(proc.terminate)
        svcs.ready_influxdb(settings, svc)
        return proc.wait()
    except svcs.ServiceError as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 1


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
    for name, url in (("mosquitto", settings.mqtt_endpoint), ("influxdb", settings.influx)):
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
