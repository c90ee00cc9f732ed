"""Real local receivers that answer as the far ends do: WeCom and DingTalk robots (errcode in a 200
answer, DingTalk's signature verified, the 20-a-minute limit enforced), a generic webhook that can
answer garbage or never answer, and an SMTP server (aiosmtpd) that can refuse recipients and offers
STARTTLS with a self-signed certificate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Received:
    at: float
    path: str
    query: dict[str, str]
    body: Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HttpReceiver:
    """Base: a real HTTP server on a free loopback port, recording every request."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.lock = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                status, answer = owner.answer(Received(time.time(), u.path, q, body), self)
                if status is None:
                    return  # the subclass dealt with the socket itself
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keep(self, r: Received) -> None:
        with self.lock:
            self.received.append(r)
            self.lock.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(left)
            return list(self.received)

    def answer(self, r: Received, h: BaseHTTPRequestHandler) -> tuple[int | None, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RateWindow:
    def __init__(self, count: int, window_s: float) -> None:
        self.count, self.window_s = count, window_s
        self.times: list[float] = []

    def allow(self, now: float) -> bool:
        self.times = [t for t in self.times if t > now - self.window_s]
        if len(self.times) >= self.count:
            return False
        self.times.append(now)
        return True


class WeComRobot(HttpReceiver):
    """POST /cgi-bin/webhook/send?key=K as WeCom answers: errcode 0 / 93000 (bad key) / 45009 (too fast)."""

    def __init__(self, key: str = "good-key", rate: int = 20, window_s: float = 60.0) -> None:
        self.key = key
        self.rate = RateWindow(rate, window_s)
        self.rejected: list[Received] = []
        self.force: dict[str, Any] | None = None  # answer this (e.g. a garbage body) instead
        super().__init__()

    @property
    def robot_url(self) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={self.key}"

    def answer(self, r: Received, h: BaseHTTPRequestHandler) -> tuple[int | None, Any]:
        if self.force is not None:
            self.rejected.append(r)
            return 200, self.force["body"]
        if r.query.get("key") != self.key:
            self.rejected.append(r)
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [1700000000_1_abc]"}
        if not isinstance(r.body, dict) or r.body.get("msgtype") not in ("markdown", "text"):
            self.rejected.append(r)
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        if r.body["msgtype"] == "markdown" and len(r.body["markdown"]["content"].encode()) > 4096:
            self.rejected.append(r)
            return 200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
        if not self.rate.allow(r.at):
            self.rejected.append(r)
            return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
        self.keep(r)
        return 200, {"errcode": 0, "errmsg": "ok"}


def dingtalk_sign(secret: str, ts: str) -> str:
    mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class DingTalkRobot(HttpReceiver):
    """POST /robot/send?access_token=T&timestamp=&sign= as DingTalk answers: the signature is
    verified (310000 when wrong or older than an hour), 20 a minute then blocked (130101) for 10 min."""

    def __init__(self, token: str = "tok", secret: str = "SECtest", rate: int = 20, window_s: float = 60.0,
                 block_s: float = 600.0) -> None:
        self.token, self.secret = token, secret
        self.rate = RateWindow(rate, window_s)
        self.block_s = block_s
        self.blocked_until = 0.0
        self.rejected: list[tuple[Received, int]] = []
        super().__init__()

    @property
    def robot_url(self) -> str:
        return f"{self.url}/robot/send?access_token={self.token}"

    def _no(self, r: Received, code: int, msg: str) -> tuple[int, Any]:
        self.rejected.append((r, code))
        return 200, {"errcode": code, "errmsg": msg}

    def answer(self, r: Received, h: BaseHTTPRequestHandler) -> tuple[int | None, Any]:
        if r.query.get("access_token") != self.token:
            return self._no(r, 300001, "token is not exist")
        ts, sign = r.query.get("timestamp", ""), r.query.get("sign", "")
        # parse_qsl has already URL-decoded `sign` once, as DingTalk does.
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
            return self._no(r, 310000, "sign not match, more: [timestamp is expired]")
        if not hmac.compare_digest(sign, dingtalk_sign(self.secret, ts)):
            return self._no(r, 310000, "sign not match, more: [sign not match]")
        if not isinstance(r.body, dict) or r.body.get("msgtype") != "markdown" or "title" not in r.body.get(
                "markdown", {}):
            return self._no(r, 40035, "缺少参数 json")
        if r.at < self.blocked_until:
            return self._no(r, 130101, "send too fast, exceed 20 times per minute")
        if not self.rate.allow(r.at):
            self.blocked_until = r.at + self.block_s
            return self._no(r, 130101, "send too fast, exceed 20 times per minute")
        self.keep(r)
        return 200, {"errcode": 0, "errmsg": "ok"}


class Webhook(HttpReceiver):
    """A generic webhook: mode `ok`, `garbage` (bytes that are not HTTP), `hang` (never answers),
    `error` (HTTP 500)."""

    def __init__(self, mode: str = "ok", port: int = 0) -> None:
        self.mode = mode
        self.attempts = 0
        self._hung: list[Any] = []
        super().__init__(port)

    def answer(self, r: Received, h: BaseHTTPRequestHandler) -> tuple[int | None, Any]:
        self.attempts += 1
        if self.mode == "garbage":
            h.wfile.write(b"\x00\x17garbage \xff\xfe not http\r\n\r\n")
            h.wfile.flush()
            h.close_connection = True
            return None, None
        if self.mode == "hang":
            self._hung.append(h.connection)
            time.sleep(30)
            return None, None
        if self.mode == "error":
            return 500, {"error": "internal"}
        self.keep(r)
        return 200, {"ok": True}


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/hook"


# -- SMTP -------------------------------------------------------------------------------------

def self_signed(dirpath: Path) -> ssl.SSLContext:
    cert, key = dirpath / "cert.pem", dirpath / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class Mail:
    sender: str
    rcpts: list[str]
    message: Any
    tls: bool
    session: int = 0  # which SMTP connection brought it
    at: float = field(default_factory=time.time)


@dataclass
class MailServer:
    port: int
    mails: list[Mail] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    controller: Any = None

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.mails)


def smtp_server(tmp: Path, starttls: bool = True, refuse: set[str] | None = None) -> Iterator[MailServer]:
    from aiosmtpd.controller import Controller

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    box = MailServer(port, refuse=set(refuse or ()))

    class Handler:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
            if address in box.refuse:
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
            box.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), msg,
                                  tls=session.ssl is not None, session=id(session)))
            return "250 Message accepted for delivery"

    kw: dict[str, Any] = {}
    if starttls:
        kw["tls_context"] = self_signed(tmp)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
    controller.start()
    box.controller = controller
    try:
        yield box
    finally:
        controller.stop()
