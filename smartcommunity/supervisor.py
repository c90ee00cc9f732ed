"""`smartcommunity up`: start what is missing, run the parts as child processes, watch them.

A child that dies is reported on stderr with its exit code and restarted with backoff; on
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

from core import procs
from core.accounts import part_env
from core.secrets import tighten_tree
from core.settings import Settings
from smartcommunity.services import RunningService, ServiceError, start_missing

log = logging.getLogger("smartcommunity.up")

MAX_BACKOFF_S = 30.0
STABLE_S = 60.0  # a child that ran this long has its backoff reset
SERVICE_CHECK_S = 5.0  # how often `up` checks that the broker and the database still answer


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

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=procs.preexec())
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
        self.children = [Child(name, part_argv(verb), env | part_env(name, settings.secure))
                         for name, verb in parts]
        self.services: list[RunningService] = []
        self._stop = threading.Event()
        self._last_service_check = time.monotonic()

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

    def _watch_once(self) -> None:
        now = time.monotonic()
        if now - self._last_service_check >= SERVICE_CHECK_S or any(not s.alive() for s in self.services):
            self._last_service_check = now
            self._watch_services()
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
