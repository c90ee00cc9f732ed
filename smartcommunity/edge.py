"""A community's edge broker: a Mosquitto beside that community's devices, bridged into the center.

Devices publish to their edge exactly as to the center (the contract's topics; under SC_SECURE
their own accounts, TLS). The edge forwards `sc/{community}/#` to the center over one bridge
connection at QoS 1 with a persistent session (`cleansession false`) and a persistent queue
(`persistence true`, `queue_qos0_messages`, QoS 0 readings handed to the bridge at QoS 1): while
the uplink is cut the edge keeps what its devices publish (up to `max_queued_messages`), on disk
every `autosave_interval` seconds and when it stops, and the bridge delivers the backlog in order
once the link is back. Nothing flows from the center to the edge. The bridge says whether its
uplink is up on `sc-internal/edge/{community}/state` ("1"/"0", retained, on both brokers).

Under SC_SECURE the bridge connects with TLS (the project's CA) as `svc.edge-{community}`, which
may publish only under `sc/{community}/#` and that state topic (security/broker.py).

`smartcommunity edge config COMMUNITY --center HOST:PORT` writes the edge's folder (its
`mosquitto.conf`, data, and when secure its accounts, CA and certificate) for the edge machine;
`smartcommunity edge run ...` writes it and runs the broker in this process's place (systemd).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.accounts import edge_account
from core.contract import COMMUNITIES, TOPIC_ROOT
from core.secrets import private_dir, write_private
from core.settings import Settings, UrlParts
from security.broker import edge_state_topic
from smartcommunity.services import (
    MOSQUITTO,
    RunningService,
    ServiceError,
    _launch,
    _wait_ready,
    ensure_binary,
    mosquitto_conf,
    port_open,
    tls_answers,
)

DEFAULT_MAX_QUEUED = 1_000_000  # a street's 240 msg/s for more than an hour; memory ~1 KB a message
DEFAULT_AUTOSAVE_S = 5  # what a crash of the edge itself (not a clean stop) may lose, at most


@dataclass(frozen=True)
class EdgeSpec:
    community: str
    centers: list[tuple[str, int]]  # the center first; standby centers after it, tried in turn
    # Further centers that each keep their own full copy: one more bridge (and queue) each, so the
    # loss of one center loses none of what reached the edge (README: two centers).
    copies: list[tuple[str, int]] = field(default_factory=list)
    port: int = 1883  # the devices' listener (loopback-only and plain when secure)
    bind: str = "127.0.0.1"  # secure: the TLS listener's address, which devices reach
    tls_port: int = 8883
    hosts: list[str] = field(default_factory=list)  # names of the edge in its certificate, besides `bind`
    max_queued: int = DEFAULT_MAX_QUEUED
    autosave_s: int = DEFAULT_AUTOSAVE_S
    restart_s: tuple[int, int] = (1, 5)  # bridge reconnect backoff, base and cap: back within 5 s of the center
    keepalive_s: int = 15  # a silent uplink is noticed after 1.5 times this

    def __post_init__(self) -> None:
        if self.community not in COMMUNITIES:
            raise ServiceError(f"unknown community {self.community!r} (one of {', '.join(sorted(COMMUNITIES))})")
        if not self.centers:
            raise ServiceError("an edge needs the center's broker address (--center HOST:PORT)")


def connection_name(community: str) -> str:
    return f"sc-edge-{community}"


def edge_dir(settings: Settings, community: str) -> Path:
    return settings.data_path / "edge" / community


def parse_center(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


def bridge_conf(spec: EdgeSpec, *, tls_cafile: Path | None, username: str | None, password: str | None) -> str:
    """The bridge sections: the community's topics out to the center at QoS 1, queued while it is away;
    one more bridge to each center that keeps a copy."""
    targets = [(connection_name(spec.community), spec.centers)]
    targets += [(f"{connection_name(spec.community)}-copy{i}", [c]) for i, c in enumerate(spec.copies, 1)]
    return "\n".join(_bridge(spec, name, centers, tls_cafile, username, password) for name, centers in targets)


def _bridge(spec: EdgeSpec, name: str, centers: list[tuple[str, int]], tls_cafile: Path | None,
            username: str | None, password: str | None) -> str:
    c = spec.community
    lines = [
        f"connection {name}",
        "address " + " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in centers),
        f"remote_clientid {name}",
        f"topic {TOPIC_ROOT}/{c}/# out 1",
        # The center keeps the bridge's session, and the edge its local subscription and queue,
        # across a cut uplink and restarts of either.
        "cleansession false",
        "local_cleansession false",
        "start_type automatic",
        f"restart_timeout {spec.restart_s[0]} {spec.restart_s[1]}",
        f"keepalive_interval {spec.keepalive_s}",
        "try_private true",
        "notifications true",
        f"notification_topic {edge_state_topic(c)}",
    ]
    if username:
        lines += [f"remote_username {username}", f"remote_password {password}"]
    if tls_cafile is not None:
        lines += [f"bridge_cafile {tls_cafile}", "bridge_tls_version tlsv1.2", "bridge_insecure false"]
    return "\n".join(lines) + "\n"


def write_edge(settings: Settings, spec: EdgeSpec, directory: Path | None = None) -> Path:
    """Write the edge's folder (config, data dir; when secure its accounts, CA, certificate and the
    bridge's password, all 0600); returns the config's path. Under SC_SECURE it also makes the
    bridge's account on the center (and reloads a center broker `up` started)."""
    root = private_dir(directory or edge_dir(settings, spec.community))
    data = root / "data"
    data.mkdir(exist_ok=True)
    username = password = None
    cafile = None
    if settings.secure:
        from core.registry import ensure_registry, load_registry
        from security.broker import broker_files, edge_access, ensure_service_accounts, reload_broker

        if ensure_service_accounts(settings, dict(load_registry(ensure_registry(settings)).items())):
            reload_broker(broker_files(settings))
        from core.secrets import read_secret

        username = edge_account(spec.community)
        password = read_secret(settings, "mqtt", username)
        access = edge_access(settings, spec.community, root, spec.port, spec.tls_port, spec.bind, spec.hosts)
        cafile = root / "ca.pem"
    elif not UrlParts("mqtt", spec.bind, 0, None, None).is_loopback:
        raise ServiceError(f"edge bind address {spec.bind} is not loopback: a broker reachable from the network "
                           "needs credentials and TLS; set SC_SECURE=1")
    else:
        access = None
    conf = mosquitto_conf(spec.port, data, spec.max_queued, access, root / "mosquitto.pid", spec.autosave_s)
    conf += f"""# While the uplink is down the bridge is a disconnected persistent client: QoS 0 telemetry is
# queued for it too (each client's queue is bounded by max_queued_messages above) ...
queue_qos0_messages true
# ... and handed to it at its subscription's QoS 1: Mosquitto writes only QoS 1/2 messages to disk,
# so a QoS 0 reading queued as such would be lost when the edge restarts while cut (tested).
upgrade_outgoing_qos true

{bridge_conf(spec, tls_cafile=cafile, username=username, password=password)}"""
    path = root / "mosquitto.conf"
    write_private(path, conf)
    if settings.secure:
        from security.broker import BrokerFiles, reload_broker

        reload_broker(BrokerFiles(root))  # an edge already running there takes new device accounts
    return path


def edge_argv(settings: Settings, conf: Path) -> list[str]:
    return [ensure_binary(MOSQUITTO, settings), "-c", str(conf)]


def start_edge(settings: Settings, spec: EdgeSpec, directory: Path | None = None) -> RunningService:
    """Write the edge's folder and run its broker as our child (until `stop()`)."""
    return run_edge(settings, spec, write_edge(settings, spec, directory))


def run_edge(settings: Settings, spec: EdgeSpec, conf: Path) -> RunningService:
    """Run the edge broker of a config `write_edge` wrote, as our child; once its listener answers."""
    url = UrlParts("mqtts" if settings.secure else "mqtt", "127.0.0.1",
                   spec.tls_port if settings.secure else spec.port, None, None)
    svc = _launch(MOSQUITTO, edge_argv(settings, conf), conf.parent / "mosquitto.log", url, False, settings)
    probe = tls_answers if settings.secure else port_open
    _wait_ready(svc, lambda: probe("127.0.0.1", url.port), 20)
    return svc


def register(sub: Any) -> None:
    p = sub.add_parser("edge", help="a community's edge broker, bridged into the center (QoS 1, persistent queue)")
    esub = p.add_subparsers(dest="action", required=True)
    for action, helptext, func in (
        ("config", "write the edge's folder (config, data; secure: accounts, CA, certificate) and say how to run it",
         cmd_config),
        ("run", "write it and run the edge broker in this process's place (for systemd)", cmd_run),
    ):
        a = esub.add_parser(action, help=helptext)
        a.add_argument("community", choices=sorted(COMMUNITIES))
        a.add_argument("--center", action="append", default=[], metavar="HOST:PORT",
                       help="the center's broker as the edge reaches it (its TLS port when secure); repeat for "
                            "standby centers, tried in turn (default: SC_MQTT_URL's broker)")
        a.add_argument("--copy", action="append", default=[], metavar="HOST:PORT",
                       help="another center that keeps its own full copy: a bridge and a queue of its own "
                            "(repeatable)")
        a.add_argument("--dir", type=Path, help="the edge's folder (default <SC_DATA_DIR>/edge/<community>)")
        a.add_argument("--port", type=int, default=1883, help="the devices' listener (default 1883; "
                       "loopback only, and plain with credentials when secure)")
        a.add_argument("--bind", default="127.0.0.1", help="secure: the address of the devices' TLS listener")
        a.add_argument("--tls-port", type=int, default=8883, help="secure: the devices' TLS port (default 8883)")
        a.add_argument("--host", action="append", default=[], help="secure: a name or address of the edge "
                       "for its certificate (repeatable)")
        a.add_argument("--max-queued", type=int, default=DEFAULT_MAX_QUEUED,
                       help=f"messages kept for the center while the uplink is down (default {DEFAULT_MAX_QUEUED:,})")
        a.add_argument("--autosave", type=int, default=DEFAULT_AUTOSAVE_S,
                       help=f"seconds between saves of the queue to disk (default {DEFAULT_AUTOSAVE_S})")
        a.set_defaults(func=func)


def _spec(args: argparse.Namespace, settings: Settings) -> EdgeSpec:
    centers = [parse_center(c) for c in args.center] or [(settings.mqtt_endpoint.host, settings.mqtt_endpoint.port)]
    return EdgeSpec(args.community, centers, copies=[parse_center(c) for c in args.copy], port=args.port,
                    bind=args.bind, tls_port=args.tls_port,
                    hosts=args.host, max_queued=args.max_queued, autosave_s=args.autosave)


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    try:
        conf = write_edge(settings, _spec(args, settings), args.dir)
    except (ServiceError, ValueError) as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 2
    print(f"edge broker for {args.community} written to {conf.parent} (copy the folder to the edge machine, "
          f"same path); run it with: mosquitto -c {conf}")
    passwd = conf.parent / "passwd"
    if settings.secure:
        n = len(passwd.read_text().splitlines())
        print(f"{n} device accounts of {args.community} on it" if n else
              f"no device of {args.community} has a broker account yet: run `smartcommunity devices provision` "
              "first, then this again")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        conf = write_edge(settings, _spec(args, settings), args.dir)
        argv = edge_argv(settings, conf)
    except (ServiceError, ValueError) as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 2
    os.execv(argv[0], argv)
