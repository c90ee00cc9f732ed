"""Dashboards behind a load balancer: `smartcommunity balancer --backend HOST:PORT --backend HOST:PORT`
runs HAProxy (Debian `haproxy`) in front of two or more dashboard instances, with the configuration
written here (`SC_DATA_DIR/haproxy/haproxy.cfg`).

Any instance serves any request: sign-in state lives where the store is (core/sqldb.py; one host's
files, or PostgreSQL across hosts) and every page reads the alert store. A browser still stays on one
instance while it is up (a cookie, `SCLB`), so a wall's live updates come from one process's view;
when that instance stops answering, HAProxy's health check (every second, down after two misses)
takes it out and the browser's next request goes to another (`option redispatch`; a request that
could not even connect is retried there, one that reached a dying instance is not, since a staff
action must not be sent twice). The dashboards' own callbacks then carry on: a wall needs no reload.

Liveness, not health, decides: `/api/health` answers 503 when a part of the system is down (InfluxDB,
the broker), and the dashboards must still serve then, so any answer from it means "up". The check
names `localhost` as its Host: the dashboards refuse unknown host names (DNS rebinding).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from pathlib import Path

from core import procs
from core.settings import Settings
from smartcommunity.services import ServiceError, ServiceSpec, ensure_binary

log = logging.getLogger(__name__)

HAPROXY = ServiceSpec("haproxy", "haproxy", "haproxy", "--backend")
CHECK_EVERY_MS = 1000
FALL = 2  # misses before an instance is out: 2 s
RISE = 2
COOKIE = "SCLB"


class BalancerError(ValueError):
    pass


def parse_backend(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BalancerError(f"--backend {text!r}: expected HOST:PORT, e.g. 10.0.0.11:8050")
    return host.strip("[]"), int(port)


def config(bind_host: str, bind_port: int, backends: list[tuple[str, int]]) -> str:
    """HAProxy's configuration for these dashboards (see the module's text for each choice)."""
    if len(backends) < 1:
        raise BalancerError("at least one --backend")
    servers = "\n".join(
        f"    server d{i} {h}:{p} check inter {CHECK_EVERY_MS} fall {FALL} rise {RISE} cookie d{i}"
        for i, (h, p) in enumerate(backends, start=1))
    return f"""# Written by `smartcommunity balancer` (smartcommunity/balancer.py); edits are overwritten.
global
    maxconn 4096

defaults
    mode http
    log stdout format raw local0 info
    option httplog
    option forwardfor
    option redispatch
    retries 2
    retry-on conn-failure
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 10s

frontend dashboards
    bind {bind_host}:{bind_port}
    default_backend dashboards

backend dashboards
    balance roundrobin
    cookie {COOKIE} insert indirect nocache httponly
    option httpchk
    http-check send meth GET uri /api/health ver HTTP/1.1 hdr Host localhost
    http-check expect rstatus ^(200|503)$
{servers}
"""


def config_path(settings: Settings) -> Path:
    return settings.data_path / "haproxy" / "haproxy.cfg"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("balancer", help="run HAProxy in front of two or more dashboard instances")
    p.add_argument("--backend", action="append", required=True, metavar="HOST:PORT",
                   help="a dashboard instance (give it twice or more)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default SC_HTTP_PORT)")
    p.add_argument("--config-only", action="store_true", help="write the configuration, print its path, and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        backends = [parse_backend(b) for b in args.backend]
        text = config(args.host, args.port or settings.http_port, backends)
    except BalancerError as exc:
        print(f"smartcommunity balancer: {exc}", file=sys.stderr)
        return 2
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if args.config_only:
        print(path)
        return 0
    try:
        binary = ensure_binary(HAPROXY, settings)
    except ServiceError as exc:
        print(f"smartcommunity balancer: {exc}", file=sys.stderr)
        return 2
    check = subprocess.run([binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        print(f"smartcommunity balancer: HAProxy refused {path}:\n{check.stderr.strip()}", file=sys.stderr)
        return 2
    # -db: in the foreground, no daemon; its own stop on SIGUSR1 (soft: lets requests finish).
    proc = subprocess.Popen([binary, "-db", "-f", str(path)])
    procs.on_stop(lambda: proc.send_signal(signal.SIGUSR1))
    log.info("balancer on %s:%s in front of %s", args.host, args.port or settings.http_port,
             ", ".join(f"{h}:{p}" for h, p in backends))
    return proc.wait()
