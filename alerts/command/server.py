"""The alerts service's command endpoint: JSON over HTTP on loopback, applied on the engine thread.

A request thread checks the secret and the command, answers a command applied before from the store,
and otherwise queues it and waits. The engine thread takes queued commands between device messages
(`drain`), so a command never races the engine. A command the engine thread has not taken within
`WAIT_S` is withdrawn and answered 503 (nothing applied); one it has taken is always waited for.
"""

from __future__ import annotations

import hmac
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from alerts.command import WAIT_S, Answer, Command, endpoint_path
from alerts.store import COMMAND, Store
from core.diskfull import DISK_FULL_TEXT, is_disk_full
from core.secrets import write_private
from core.settings import Settings
from core.timebase import now_iso

log = logging.getLogger(__name__)

MAX_BODY = 12 * 1024 * 1024  # three field photos, base64


class Pending:
    """One queued command; `lock` decides, once, whether the engine takes it or the sender withdraws it."""

    def __init__(self, cmd: Command) -> None:
        self.cmd = cmd
        self.lock = threading.Lock()
        self.taken = False
        self.withdrawn = False
        self.done = threading.Event()
        self.answer: Answer | None = None


class CommandServer:
    def __init__(self, settings: Settings, store: Store, apply: Callable[[Command], Answer],
                 wake: Callable[[], None] = lambda: None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.store = store
        self.apply = apply
        self.wake = wake  # nudges the engine thread when it is waiting for device messages
        self.queue: queue.Queue[Pending] = queue.Queue()
        self.secret = secrets.token_urlsafe(32)
        self.counters = {"applied": 0, "refused": 0, "replayed": 0, "withdrawn": 0}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:  # the service logs what matters itself
                pass

            def do_POST(self) -> None:
                status, body = server.handle(self.headers.get("Authorization", ""), self.path,
                                             self.rfile, int(self.headers.get("Content-Length") or 0))
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self.endpoint_written = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="alert-commands",
                                        daemon=True)
        self._thread.start()
        self.write_endpoint()

    def write_endpoint(self) -> None:
        """Tell senders where to find us; again later if it could not be written (a full disk)."""
        if self.endpoint_written:
            return
        path = endpoint_path(self.settings.data_path)
        try:
            write_private(path, orjson.dumps({"url": f"http://127.0.0.1:{self.port}", "secret": self.secret,
                                              "pid": os.getpid()}))
        except OSError as exc:  # a full disk: staff commands wait for room (they would be refused anyway)
            log.error("cannot write %s (%s): staff commands are refused until it can be written", path, exc)
            return
        self.endpoint_written = True
        log.info("staff commands on 127.0.0.1:%d", self.port)

    def stop(self) -> None:
        endpoint_path(self.settings.data_path).unlink(missing_ok=True)
        self.httpd.shutdown()
        self.httpd.server_close()
        # Whoever still waits is told the service stopped: nothing of theirs was applied.
        while True:
            try:
                p = self.queue.get_nowait()
            except queue.Empty:
                break
            p.answer = Answer(503, {"error": "the alerts service stopped"})
            p.done.set()

    # -- a request thread
    def handle(self, auth: str, path: str, body: Any, length: int) -> tuple[int, dict[str, Any]]:
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.secret}".encode()):
            return 401, {"error": "not the alerts service's command secret"}
        if path != "/command":
            return 404, {"error": f"no {path}; POST /command"}
        if not 0 < length <= MAX_BODY:
            return 413 if length else 400, {"error": f"a command is 1..{MAX_BODY} bytes of JSON"}
        try:
            cmd = Command.from_json(orjson.loads(body.read(length)))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return 400, {"error": f"bad command: {exc}"}
        if getattr(self.store, "full_since", None) is not None:
            return 503, {"error": "数据盘已满，暂不能操作 (the data disk is full: nothing was applied)"}
        p = Pending(cmd)
        self.queue.put(p)
        self.wake()
        if not p.done.wait(WAIT_S):
            with p.lock:
                if not p.taken:
                    p.withdrawn = True
                    self.counters["withdrawn"] += 1
                    return 503, {"error": "the alerts service is too busy to take the command; nothing was applied"}
            p.done.wait()
        assert p.answer is not None
        return 200, p.answer.as_json()

    # -- the engine thread
    def drain(self, limit: int = 100) -> int:
        """Apply up to `limit` queued commands; returns how many were taken."""
        n = 0
        while n < limit:
            try:
                p = self.queue.get_nowait()
            except queue.Empty:
                break
            with p.lock:
                if p.withdrawn:
                    continue
                p.taken = True
            n += 1
            try:
                p.answer = self.run(p.cmd)
            except Exception as exc:
                log.exception("command %s (%s) failed", p.cmd.command_id, p.cmd.name)
                full = is_disk_full(exc)
                why = DISK_FULL_TEXT if full else f"the command failed in the alerts service: {type(exc).__name__}"
                p.answer = Answer(503 if full else 500, {"error": why})
            finally:
                p.done.set()
        return n

    def run(self, cmd: Command) -> Answer:
        from alerts.command.handlers import answer_of

        before = answer_of(self.store, cmd)
        if before is not None:
            self.counters["replayed"] += 1
            return before
        at = now_iso()
        token = COMMAND.set((cmd.command_id, cmd.name, cmd.actor, at))
        try:
            answer = self.apply(cmd)
        finally:
            COMMAND.reset(token)
        self.counters["applied" if answer.ok else "refused"] += 1
        log.info("command %s %s by %s via %s: %d", cmd.command_id, cmd.name, cmd.actor, cmd.via, answer.status)
        self.store.answered(cmd.command_id, cmd.name, cmd.actor, at, answer.status, answer.body)
        return answer
