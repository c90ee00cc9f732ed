"""Health of the parts the dashboard depends on: broker, database, ingest and alert workers, the data
disk, and the host clock (alerts, the timeline and the report depend on it).

The broker check is a real MQTT CONNECT/CONNACK (a TCP accept alone would pass a hung broker or
one refusing our credentials). Checks run in parallel, each bounded by a short timeout, and the
result is cached briefly so a scraping monitor cannot make the dashboard hammer the services.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core import diskfull, heartbeat
from core.accounts import MQTT_HEALTH
from core.datasize import DataSizes, Scan
from core.influx import client_for
from core.mqtt import credentials, tls_context
from core.secrets import SecretError
from core.settings import Settings
from core.timebase import now_iso

OK, DOWN = "ok", "down"
WARN = "warn"  # worth a look, not a failure: /api/health still answers 200
NTP_CHECK_S = 60.0  # how often the NTP state is asked for (a subprocess), not per request
CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """An MQTT 3.1.1 CONNECT with clean session (no state left on the broker)."""
    flags = 0x02
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + payload
    return b"\x10" + _remaining_length(len(body)) + body


def check_mqtt(settings: Settings, timeout_s: float = 2.0) -> tuple[str, dict[str, Any]]:
    url = settings.mqtt_endpoint
    detail: dict[str, Any] = {"broker": f"{url.host}:{url.port}"}
    t0 = time.monotonic()
    try:
        # Its own connect-only account under SC_SECURE (never the dashboard's: one connection per account).
        user, password = credentials(settings, MQTT_HEALTH if settings.secure and not url.username else None)
    except SecretError as exc:
        return DOWN, detail | {"error": str(exc)}
    try:
        with socket.create_connection((url.host, url.port), timeout=timeout_s) as raw:
            sock: socket.socket = raw
            if url.tls:
                sock = tls_context(settings).wrap_socket(raw, server_hostname=url.host)
            sock.settimeout(timeout_s)
            cid = f"sc-health-{os.getpid()}-{threading.get_ident() % 100000}"
            sock.sendall(mqtt_connect_packet(cid, user, password))
            ack = b""
            while len(ack) < 4:
                chunk = sock.recv(4 - len(ack))
                if not chunk:
                    break
                ack += chunk
            if len(ack) < 4 or ack[0] != 0x20:
                return DOWN, detail | {"error": "no CONNACK from broker"}
            if ack[3] != 0:
                return DOWN, detail | {"error": f"connect refused: {CONNACK_REASONS.get(ack[3], ack[3])}"}
            sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError as exc:
        return DOWN, detail | {"error": f"{exc.__class__.__name__}: {exc}"}
    return OK, detail | {"latency_ms": round((time.monotonic() - t0) * 1000, 1)}


def check_influx(settings: Settings, timeout_s: float = 2.0) -> tuple[str, dict[str, Any]]:
    parts = settings.influx
    detail: dict[str, Any] = {"url": f"{parts.scheme}://{parts.host}:{parts.port}", "db": settings.influx_db}
    try:
        client = client_for(settings, timeout_s=timeout_s)
    except SecretError as exc:
        return DOWN, detail | {"error": str(exc)}
    t0 = time.monotonic()
    try:
        ok = client.ping(timeout_s=timeout_s)
    finally:
        client.close()
    if not ok:
        return DOWN, detail | {"error": "no answer to /ping"}
    detail["latency_ms"] = round((time.monotonic() - t0) * 1000, 1)
    # Answering /ping is not taking writes (a full disk, a broken WAL): ingest knows its writes.
    failing = [hb for hb in heartbeat.read_all(settings.data_path, "ingest")
               if hb.get("fresh") and not hb.get("stopped") and hb.get("influx_write_failing_since")]
    if failing:
        since = min(float(hb["influx_write_failing_since"]) for hb in failing)
        return DOWN, detail | {"error": f"writes failing for {time.time() - since:.0f} s (ingest spooling): "
                                        f"{failing[0].get('influx_write_error') or ''}"[:400],
                               "writes_failing_since": since}
    return OK, detail


def check_workers(data_path: Path, prefix: str) -> tuple[str, dict[str, Any]]:
    """OK when at least one worker of this kind has a fresh heartbeat and has not stopped."""
    now = time.time()
    workers = []
    for hb in heartbeat.read_all(data_path, prefix):
        alive = bool(hb.get("fresh")) and not hb.get("stopped")
        workers.append(
            {
                "name": hb.get("name"),
                "pid": hb.get("pid"),
                "alive": alive,
                "age_s": round(now - float(hb.get("at", 0)), 1),
            }
        )
    alive = sum(1 for w in workers if w["alive"])
    detail: dict[str, Any] = {"workers": workers, "alive": alive}
    if not alive:
        detail["error"] = "no fresh heartbeat" if workers else "no heartbeat found"
    return (OK if alive else DOWN), detail


def check_disk(data_path: Path, scan: Scan | None = None, max_pct: float | None = None) -> tuple[str, dict[str, Any]]:
    """The data disk: down past FULL_PCT used, or while a part cannot write to it; with the last `scan`
    of SC_DATA_DIR, each part's folder's size, and a warning when it holds more than `max_pct` of the disk."""
    try:
        use = diskfull.usage(data_path)
    except OSError as exc:
        return DOWN, {"error": f"cannot look at {data_path}: {exc}"}
    detail: dict[str, Any] = use.as_json()
    if scan is not None:
        detail |= {"folders_mb": {k: round(v / 2**20, 2) for k, v in sorted(scan.folders.items())},
                   "data_dir_mb": round(scan.total_bytes / 2**20, 2),
                   "data_dir_share_pct": float(f"{scan.share_pct:.3g}"), "data_dir_max_pct": max_pct,
                   "scanned_at": scan.at}
    stuck = heartbeat.cannot_write(data_path)
    if stuck:
        detail["cannot_write"] = stuck
    if use.full or stuck:
        why = [f"{use.used_pct:.0f}% used ({use.free_bytes / 2**20:.0f} MB free)"] if use.full else []
        why += [f"{', '.join(stuck)} cannot write (kept in memory)"] if stuck else []
        return DOWN, detail | {"error": "; ".join(why)}
    if scan is not None and scan.at is not None and max_pct is not None and scan.share_pct > max_pct:
        biggest = max(scan.folders, key=lambda k: scan.folders[k])
        return WARN, detail | {"warning": f"the data directory holds {scan.share_pct:.1f}% of its disk "
                                          f"(warn past {max_pct:g}%; largest: {biggest}, "
                                          f"{scan.folders[biggest] / 2**20:.0f} MB)"}
    return OK, detail


def ntp_synchronised(timeout_s: float = 2.0) -> str:
    """"yes" / "no" as systemd-timesyncd (timedatectl) or chrony says; "unknown" where neither answers
    (no systemd, a container, another time daemon): not an error."""
    timedatectl = shutil.which("timedatectl")
    if timedatectl:
        try:
            out = subprocess.run([timedatectl, "show", "-p", "NTPSynchronized", "--value"],
                                 capture_output=True, text=True, timeout=timeout_s)
            if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    chronyc = shutil.which("chronyc")
    if chronyc:
        try:
            out = subprocess.run([chronyc, "-n", "tracking"], capture_output=True, text=True, timeout=timeout_s)
            if out.returncode == 0 and "Leap status" in out.stdout:
                return "no" if "Not synchronised" in out.stdout else "yes"
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"


def check_clock(data_path: Path, ntp: str, warn_s: float) -> tuple[str, dict[str, Any]]:
    """WARN when NTP says the host clock is not synchronised, or when the devices' timestamps differ
    from the host clock at arrival by more than `warn_s` on average (ingest's recent readings)."""
    detail: dict[str, Any] = {"ntp": ntp, "skew_s": None, "readings": 0, "warn_s": warn_s, "drifting": False}
    skew = heartbeat.clock_skew(data_path)
    if skew is not None:
        detail["skew_s"], detail["readings"] = round(skew[0], 2), skew[1]
        detail["drifting"] = abs(skew[0]) > warn_s
    why = ["NTP not synchronised"] if ntp == "no" else []
    if detail["drifting"]:
        why.append(f"device timestamps {detail['skew_s']:+.1f} s from the host clock on average "
                   f"(over {detail['readings']} readings; warn past {warn_s:g} s)")
    if why:
        return WARN, detail | {"warning": "; ".join(why)}
    return OK, detail


class HealthChecker:
    def __init__(self, settings: Settings, cache_s: float = 1.0) -> None:
        self.settings = settings
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, bool, dict[str, Any]] | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sc-health")
        self._ntp: tuple[float, str] | None = None
        self.sizes = DataSizes(settings.data_path, settings.data_scan_s)

    def _ntp_state(self) -> str:
        if self._ntp is None or time.monotonic() - self._ntp[0] >= NTP_CHECK_S:
            self._ntp = (time.monotonic(), ntp_synchronised())
        return self._ntp[1]

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(nothing down, body): body has one "ok"/"warn"/"down" per part plus `details`; `status` is
        "ok", "warn" (something to look at, e.g. the clock) or "degraded" (something down)."""
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1], self._cached[2]
            mqtt_f = self._pool.submit(check_mqtt, self.settings)
            influx_f = self._pool.submit(check_influx, self.settings)
            results = {
                "mqtt": mqtt_f.result(),
                "influxdb": influx_f.result(),
                "ingest": check_workers(self.settings.data_path, "ingest"),
                "alerts": check_workers(self.settings.data_path, "alerts"),
                "disk": check_disk(self.settings.data_path, self.sizes.latest(), self.settings.data_dir_max_pct),
                "clock": check_clock(self.settings.data_path, self._ntp_state(), self.settings.clock_skew_warn_s),
            }
            body: dict[str, Any] = {k: v[0] for k, v in results.items()}
            ok = all(v in (OK, WARN) for v in body.values())
            body["status"] = ("degraded" if not ok else WARN if WARN in body.values() else OK)
            body["details"] = {k: v[1] for k, v in results.items()}
            body["checked_at"] = now_iso()
            self._cached = (time.monotonic(), ok, body)
            return ok, body


class Freshness:
    """Is the data on the screen current? Judged from the ingest and alert heartbeats and from the
    age of the newest data (the last time the ingest workers' `received` counter moved), never from
    how late this page or its browser is.

    `check()` returns {"stale": bool, "reasons": [...], "data_age_s": float | None}."""

    def __init__(self, data_path: Path, stale_after_s: float) -> None:
        self.data_path = data_path
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._received: int | None = None
        self._moved_at = time.time()  # benefit of the doubt at start: the first look says "just now"

    def check(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        reasons: list[str] = []
        ingest = [hb for hb in heartbeat.read_all(self.data_path, "ingest") if not hb.get("stopped")]
        alive = [hb for hb in ingest if hb.get("fresh")]
        if not alive:
            reasons.append("接入服务无心跳" if not ingest else "接入服务心跳中断")
        else:
            if all(hb.get("mqtt") == "down" for hb in alive):
                reasons.append("接入服务连不上消息总线")
            if all(hb.get("influxdb") == "down" for hb in alive):
                reasons.append("接入服务写不进时序库")
        received = sum(int((hb.get("counters") or {}).get("received", 0)) for hb in alive)
        with self._lock:
            if alive and received != self._received:
                if self._received is not None:  # moved since the last look (a restart counts too)
                    self._moved_at = now
                self._received = received
            age = now - self._moved_at
        if alive and age > self.stale_after_s:
            reasons.append(f"{int(age)} 秒无新数据")
        engine = [hb for hb in heartbeat.read_all(self.data_path, "alerts")
                  if hb.get("fresh") and not hb.get("stopped")]
        if not engine:
            reasons.append("告警引擎无心跳")
        disk, detail = check_disk(self.data_path)
        if disk != OK:
            reasons.append(f"数据盘 {detail.get('used_pct', '?')}% 已用" + (
                f", {'、'.join(detail['cannot_write'])} 写不进磁盘 (记录暂存内存, 告警照常)"
                if detail.get("cannot_write") else ""))
        return {"stale": bool(reasons), "reasons": reasons, "data_age_s": round(age, 1) if alive else None}
