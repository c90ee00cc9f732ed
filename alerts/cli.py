"""Verbs: `alerts` runs the rule engine; `notify test|check|status` for the notification channels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from core import procs
from core.settings import Settings

TEST_KINDS = ("wecom", "dingtalk", "webhook", "email", "sms")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="run the alert rule engine")
    p.set_defaults(func=run_alerts)

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


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.configfile import ConfigError
    from alerts.service import AlertService

    try:
        svc = AlertService(settings)
    except ConfigError as exc:
        print(f"smartcommunity alerts: refused:\n{exc}", file=sys.stderr)
        return 2
    procs.on_stop(svc.stop)
    svc.run_forever()
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


def run_notify_status(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.delivery import cursor_dir, outbox_path

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
    return 0
