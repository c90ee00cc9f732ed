"""`smartcommunity up`: start what is missing, run the parts as child processes, watch them.

Each part's output goes to `up`'s stderr and to `SC_DATA_DIR/log/<part>.log`, rotated by size
(core/logfiles.py). A child that dies is reported on stderr with its exit code and restarted with backoff. A data disk
past 90 % and a part that cannot write to it are reported on stderr (the parts keep warning from
memory meanwhile). An InfluxDB this process started that answers but keeps refusing ingest's writes
once its disk has room again (InfluxDB 1.x's WAL stays broken after a full disk) is restarted, at
most `MAX_WRITE_RESTARTS` times an hour; the ingest spool then drains into it. On
SIGINT/SIGTERM the parts stop first (so ingest flushes and acknowledges), then the services
this process started, and every port is free again when `up` returns.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from core import diskfull, heartbeat, procs
from core.accounts import part_env
from core.logfiles import LogPump, log_dir
from core.secrets import tighten_tree
from core.settings import Settings
from smartcommunity.services import INFLUXDB, RunningService, ServiceError, start_influxdb, start_missing

log = logging.getLogger("smartcommunity.up")

MAX_BACKOFF_S = 30.0
STABLE_S = 60.0  # a child that ran this long has its backoff reset
SERVICE_CHECK_S = 5.0  # how often `up` checks that the broker and the database still answer
DISK_CHECK_S = 1.0  # how often it looks at the data disk and at whether ingest's writes fail
WRITE_FAIL_RESTART_S = 10.0  # writes still failing this long after the disk has room: restart influxd
MAX_WRITE_RESTARTS = 3  # ... at most this often an hour (a restart that does not help is not repeated forever)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = None
    crashes: int = 0
    history: list[int] = field(default_factory=list)
    settings: Settings | None = None  # with it, the output goes to SC_DATA_DIR/log/<name>.log (rotated) too

    def start(self) -> None:
        if self.settings is None:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=procs.preexec())
        else:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=procs.preexec())
            assert self.proc.stdout is not None
            LogPump(self.proc.stdout, log_dir(self.settings) / f"{self.name}.log", self.settings, echo=sys.stderr)
        self.started = time.monotonic()
        self.restart_at = None
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0fs: killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait()


def part_argv(verb: list[str]) -> list[str]:
    return [sys.executable, "-m", "smartcommunity", *verb]


class Supervisor:
    def __init__(self, settings: Settings, parts: list[tuple[str, list[str]]]) -> None:
        self.settings = settings
        env = dict(os.environ)
        env.update(settings.env())
        # Under SC_SECURE each part runs as its own broker/InfluxDB account (names only, no secrets).
        self.children = [Child(name, part_argv(verb), env | part_env(name, settings.secure), settings=settings)
                         for name, verb in parts]
        self.services: list[RunningService] = []
        self._stop = threading.Event()
        self._last_service_check = time.monotonic()
        self._last_disk_check = 0.0
        self._disk_said: tuple[bool, tuple[str, ...]] = (False, ())
        self._room_since: float | None = None  # writes failing while the disk has room, since
        self.write_restarts: list[float] = []  # when influxd was restarted for refusing writes

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def _watch_services(self) -> None:
        """Restart a crashed service of ours; and if a service we were only using goes away
        from a loopback URL, start our own in its place rather than leave the parts blind."""
        dead = [s for s in self.services if not s.alive()]
        for svc in dead:
            log.error("%s exited unexpectedly with code %s (log: %s); restarting it",
                      svc.spec.name, svc.proc.returncode, svc.log_path)
            print(f"smartcommunity up: {svc.spec.name} crashed (exit {svc.proc.returncode})",
                  file=sys.stderr, flush=True)
        self.services = [s for s in self.services if s.alive()]
        try:
            started = start_missing(self.settings, announce=False)  # every few seconds: no "using ..." lines
        except ServiceError as exc:
            log.error("cannot restore a service: %s", exc)
            return
        for svc in started:
            if not any(d.spec == svc.spec for d in dead):
                print(f"smartcommunity up: nothing answered at {svc.url.host}:{svc.url.port} any more; "
                      f"started our own {svc.spec.name}", file=sys.stderr, flush=True)
        self.services += started

    def _watch_disk(self) -> None:
        """Say on stderr when the data disk passes 90 % or a part cannot write, and when it is over."""
        try:
            use = diskfull.usage(self.settings.data_path)
        except OSError:
            return
        stuck = tuple(heartbeat.cannot_write(self.settings.data_path))
        said = (use.full, stuck)
        if said == self._disk_said:
            return
        self._disk_said = said
        if use.full or stuck:
            print(f"smartcommunity up: DATA DISK {use.used_pct:.0f}% used ({use.free_bytes / 2**20:.0f} MB free)"
                  + (f"; cannot write: {', '.join(stuck)} (alerts go on from memory)" if stuck else "")
                  + ": free space under " + str(self.settings.data_path), file=sys.stderr, flush=True)
        else:
            print(f"smartcommunity up: data disk back to {use.used_pct:.0f}% used; every part writes again",
                  file=sys.stderr, flush=True)

    def _watch_writes(self, now: float) -> None:
        """Restart our influxd when ingest's writes keep failing although its disk has room."""
        ours = [s for s in self.services if s.spec == INFLUXDB and s.alive()]
        if not ours:
            return
        failing = [hb for hb in heartbeat.read_all(self.settings.data_path, "ingest")
                   if hb.get("fresh") and not hb.get("stopped") and hb.get("influx_write_failing_since")]
        try:
            room = not diskfull.usage(self.settings.data_path / "influxdb").full
        except OSError:
            room = False
        if not failing or not room:
            self._room_since = None
            return
        if self._room_since is None:
            self._room_since = now
        self.write_restarts = [t for t in self.write_restarts if now - t < 3600]
        if now - self._room_since < WRITE_FAIL_RESTART_S or len(self.write_restarts) >= MAX_WRITE_RESTARTS:
            return
        svc = ours[0]
        err = failing[0].get("influx_write_error") or ""
        print(f"smartcommunity up: influxdb refuses writes with room on its disk ({err[:200]}); restarting it "
              f"({len(self.write_restarts) + 1} of {MAX_WRITE_RESTARTS} an hour)", file=sys.stderr, flush=True)
        self.write_restarts.append(now)
        self._room_since = None
        self.services.remove(svc)
        svc.stop()
        try:
            self.services.append(start_influxdb(self.settings))
        except ServiceError as exc:
            log.error("influxdb did not come back: %s (tried again at the next check)", exc)

    def _watch_once(self) -> None:
        now = time.monotonic()
        if now - self._last_service_check >= SERVICE_CHECK_S or any(not s.alive() for s in self.services):
            self._last_service_check = now
            self._watch_services()
        if now - self._last_disk_check >= DISK_CHECK_S:
            self._last_disk_check = now
            self._watch_disk()
            self._watch_writes(now)
        for ch in self.children:
            assert ch.proc is not None
            if ch.restart_at is not None:
                if now >= ch.restart_at:
                    ch.start()
                continue
            code = ch.proc.poll()
            if code is None:
                if now - ch.started > STABLE_S:
                    ch.backoff = 1.0
                continue
            ch.crashes += 1
            ch.history.append(code)
            print(f"smartcommunity up: {ch.name} exited with code {code}; "
                  f"restarting in {ch.backoff:.0f}s (crash {ch.crashes})", file=sys.stderr, flush=True)
            ch.restart_at = now + ch.backoff
            ch.backoff = min(ch.backoff * 2, MAX_BACKOFF_S)

    def run(self) -> int:
        restore = procs.on_stop(self.request_stop)
        try:
            os.umask(0o077)
            tightened = tighten_tree(self.settings.data_path)  # files an older version left 0644
            if tightened:
                log.warning("made %d files/folders under %s private (0600/0700)", tightened, self.settings.data_path)
            self.services = start_missing(self.settings)
            for ch in self.children:
                ch.start()
            print(f"smartcommunity is up: dashboard http://127.0.0.1:{self.settings.http_port}/ "
                  f"(Ctrl-C stops everything)", file=sys.stderr, flush=True)
            while not self._stop.wait(0.5):
                self._watch_once()
            return 0
        finally:
            log.info("stopping")
            for ch in reversed(self.children):
                ch.stop()
            for svc in reversed(self.services):
                svc.stop()
            restore()
            log.info("stopped")
