"""Local Mosquitto and InfluxDB 1.x: find or install the binary, write its config, run it.

A service is only started when its URL points at loopback and nothing answers there; it then
listens on loopback only, with its data under `SC_DATA_DIR`.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import procs
from core.influx import InfluxClient
from core.logfiles import LogPump, roll_if_big
from core.settings import Settings, UrlParts

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    binary: str
    package: str
    variable: str


MOSQUITTO = ServiceSpec("mosquitto", "mosquitto", "mosquitto", "SC_MQTT_URL")
INFLUXDB = ServiceSpec("influxdb", "influxd", "influxdb", "SC_INFLUX_URL")

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_binary(binary: str) -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SBIN)
    return shutil.which(binary, path=path)


def ensure_binary(spec: ServiceSpec, settings: Settings) -> str:
    found = find_binary(spec.binary)
    if found:
        return found
    can_apt = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if settings.auto_install and can_apt:
        log.warning("%s not found: installing Debian package %s", spec.binary, spec.package)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", spec.package]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(cmd, env=env, check=False)
        found = find_binary(spec.binary)
        if found:
            return found
    raise ServiceError(
        f"{spec.binary} is not installed. Install the Debian/Ubuntu package '{spec.package}' "
        f"(sudo apt-get install {spec.package}), or point {spec.variable} at a running {spec.name}."
    )


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_conf(port: int, data: Path, max_queued: int, security: str | None = None,
                   pid_file: Path | None = None, autosave_s: int = 10) -> str:
    """`security`: listeners and auth options from security.broker (SC_SECURE); else loopback, anonymous."""
    # Started as root, Mosquitto would switch to the `mosquitto` user, which cannot write into a
    # data dir under root's home or a 0700 temp dir: persistence (sessions, queued messages)
    # would silently fail. It keeps the invoking user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    pid = f"pid_file {pid_file}\n" if pid_file else ""
    access = security or f"""listener {port} 127.0.0.1
# Loopback only, so anonymous clients are allowed (as Mosquitto 2 does by default on localhost).
allow_anonymous true
"""
    return f"""# Written by smartcommunity; edits are overwritten at the next start.
{user}{pid}{access}persistence true
persistence_location {data}/
autosave_interval {autosave_s}
# Ingest keeps a persistent session: while it is away the broker must hold everything.
max_queued_messages {max_queued}
max_queued_bytes 0
# No cap on unacknowledged QoS 1 deliveries: ingest acknowledges only after a batch is durable.
max_inflight_messages 0
persistent_client_expiration 14d
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages false
"""


def influxdb_conf(port: int, rpc_port: int, data: Path, auth: bool = False) -> str:
    return f"""# Written by smartcommunity; edits are overwritten at the next start.
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data}/meta"

[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
  index-version = "tsi1"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  write-tracing = false
  auth-enabled = {"true" if auth else "false"}
  pprof-enabled = false

[logging]
  level = "warn"

[continuous_queries]
  log-enabled = false
"""


def influxdb_rpc_address(settings: Settings) -> str | None:
    """host:port of the backup service (RPC bind-address) of the InfluxDB started for this data dir,
    if that is the one at SC_INFLUX_URL; None otherwise."""
    try:
        conf = (settings.data_path / "influxdb" / "influxdb.conf").read_text()
    except OSError:
        return None
    rpc = re.search(r'^bind-address = "([^"]+)"', conf, re.M)
    http = re.search(r'^\[http\][^\[]*?bind-address = "[^"]*:(\d+)"', conf, re.M | re.S)
    if rpc and http and settings.influx.is_loopback and int(http.group(1)) == settings.influx.port:
        return rpc.group(1)
    return None


@dataclass
class RunningService:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    url: UrlParts
    log_path: Path
    pump: LogPump | None = None  # copies its output into log_path, rotating it

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs: killing", self.spec.name, timeout_s)
                self.proc.kill()
                self.proc.wait()


def _launch(
    spec: ServiceSpec, argv: list[str], log_path: Path, url: UrlParts, detached: bool, settings: Settings
) -> RunningService:
    """Run a service with its output in `log_path`: rotated by size by a pump of ours, or, detached
    (it outlives us), appended to and rotated at the next start."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if detached:
        roll_if_big(log_path, settings)
        with log_path.open("ab") as logf:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        return RunningService(spec, proc, url, log_path)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=procs.preexec())
    assert proc.stdout is not None
    return RunningService(spec, proc, url, log_path, LogPump(proc.stdout, log_path, settings))


def _wait_ready(svc: RunningService, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            if svc.pump is not None:
                svc.pump.join()  # its last words are in the file
            # (run in the foreground by `services run`, its output went to our stderr: the journal)
            tail = svc.log_path.read_text(errors="replace")[-2000:] if svc.log_path.is_file() else ""
            raise ServiceError(f"{svc.spec.name} exited with code {svc.proc.returncode}:\n{tail}")
        if ready():
            return
        time.sleep(0.1)
    svc.stop()
    raise ServiceError(f"{svc.spec.name} did not answer on {svc.url.host}:{svc.url.port} in {timeout_s:.0f}s")


def prepare_mosquitto(settings: Settings, max_queued: int = 5_000_000) -> tuple[list[str], Path]:
    """Write Mosquitto's config under SC_DATA_DIR/mosquitto; (argv, log path) to run it with."""
    binary = ensure_binary(MOSQUITTO, settings)
    root = settings.data_path / "mosquitto"
    (root / "data").mkdir(parents=True, exist_ok=True)
    security = None
    if settings.secure:
        from security.broker import prepare_broker

        security = prepare_broker(settings)
    elif not UrlParts("mqtt", settings.mqtt_bind, 0, None, None).is_loopback:
        raise ServiceError(f"SC_MQTT_BIND={settings.mqtt_bind} is not loopback: a broker reachable from "
                           "the network needs credentials and TLS; set SC_SECURE=1")
    conf = root / "mosquitto.conf"
    conf.write_text(mosquitto_conf(settings.mqtt_endpoint.port, root / "data", max_queued, security,
                                   root / "mosquitto.pid"))
    return [binary, "-c", str(conf)], root / "mosquitto.log"


def start_mosquitto(
    settings: Settings, max_queued: int = 5_000_000, detached: bool = False
) -> RunningService:
    url = settings.mqtt_endpoint  # under SC_SECURE: the TLS listener
    argv, log_path = prepare_mosquitto(settings, max_queued)
    svc = _launch(MOSQUITTO, argv, log_path, url, detached, settings)
    _wait_mosquitto(settings, svc)
    log.info("started mosquitto on %s:%d%s (pid %d)", settings.mqtt_bind if settings.secure else "127.0.0.1",
             url.port, " (TLS, credentials required)" if settings.secure else "", svc.proc.pid)
    return svc


def _wait_mosquitto(settings: Settings, svc: RunningService) -> None:
    probe = tls_answers if settings.secure else port_open
    _wait_ready(svc, lambda: probe("127.0.0.1", svc.url.port), 20)


def prepare_influxdb(settings: Settings) -> tuple[list[str], Path]:
    """Write InfluxDB's config under SC_DATA_DIR/influxdb; (argv, log path) to run it with."""
    binary = ensure_binary(INFLUXDB, settings)
    root = settings.data_path / "influxdb"
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "influxdb.conf"
    conf.write_text(influxdb_conf(settings.influx.port, free_port(), root, auth=settings.secure))
    return [binary, "-config", str(conf)], root / "influxd.log"


def start_influxdb(settings: Settings, detached: bool = False) -> RunningService:
    argv, log_path = prepare_influxdb(settings)
    svc = _launch(INFLUXDB, argv, log_path, settings.influx, detached, settings)
    ready_influxdb(settings, svc)
    log.info("started influxd on 127.0.0.1:%d (pid %d)", settings.influx.port, svc.proc.pid)
    return svc


def ready_influxdb(settings: Settings, svc: RunningService) -> None:
    """Wait until the InfluxDB just launched answers; under SC_SECURE, create its users."""
    url = settings.influx
    client = InfluxClient(f"http://127.0.0.1:{url.port}", settings.influx_db)
    try:
        _wait_ready(svc, lambda: client.ping(0.5), 60)
    finally:
        client.close()
    if settings.secure:
        from security.influxauth import InfluxAuthError, ensure_users

        try:
            ensure_users(settings, f"http://127.0.0.1:{url.port}")
        except (InfluxAuthError, OSError) as exc:
            svc.stop()
            raise ServiceError(str(exc)) from None


def tls_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """A TLS listener answers: a full handshake, closed cleanly (a bare TCP probe every few seconds
    would put an OpenSSL error in the broker's log each time). Reachability only: not verified."""
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.unwrap()
        return True
    except (OSError, ValueError):
        return False


def needs_start(url: UrlParts) -> bool:
    """True when we should start our own service: loopback URL and nothing listening."""
    host = url.host if url.host != "localhost" else "127.0.0.1"
    if (tls_answers if url.scheme == "mqtts" else port_open)(host, url.port):
        return False
    if not url.is_loopback:
        raise ServiceError(
            f"nothing answers at {url.host}:{url.port}, and it is not on this machine: "
            "start that service or fix the URL"
        )
    return True


def start_missing(settings: Settings, detached: bool = False, announce: bool = True) -> list[RunningService]:
    """Start Mosquitto and/or InfluxDB where their URLs point at loopback and nothing answers.

    `announce`: log which running services are used (the supervisor's periodic re-check says nothing)."""
    started: list[RunningService] = []
    try:
        if needs_start(settings.mqtt_endpoint):
            started.append(start_mosquitto(settings, detached=detached))
        elif announce:
            log.info("using the MQTT broker at %s:%d", settings.mqtt_endpoint.host, settings.mqtt_endpoint.port)
        if needs_start(settings.influx):
            started.append(start_influxdb(settings, detached=detached))
        elif announce:
            log.info("using InfluxDB at %s:%d", settings.influx.host, settings.influx.port)
    except BaseException:
        for svc in reversed(started):
            svc.stop()
        raise
    return started
