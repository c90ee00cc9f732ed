"""The demo's notification inbox: a local receiver that stands in for the WeCom and DingTalk group
robots and the SMS gateway, and keeps what each recipient would have got.

`smartcommunity demo` starts it on a loopback port (`SC_DEMO_INBOX_PORT`) and points the demo's
wecom, dingtalk and sms channels at it (`demo_channels`), so the real channel code sends the real
requests and the delivery loop records real deliveries. It answers as the services do:

- `POST /cgi-bin/webhook/send?key=KEY` (WeCom robot): `msgtype` markdown or text (with
  `mentioned_mobile_list`); 200 `{"errcode": 0, "errmsg": "ok"}`, an unknown key errcode 93000;
- `POST /robot/send?access_token=T&timestamp=MS&sign=S` (DingTalk robot): `msgtype` markdown (`at`),
  the signature checked as DingTalk does (errcode 310000 "sign not match", and a timestamp more than
  an hour off is refused too);
- `POST /sms/send` (the SMS gateway of alerts/channels/sms.py): `to` [{name, phone}], `text`; 200
  `{"code": 0, "message": "ok"}`.

A body that is not such a request (not JSON, no content, an unknown msgtype, no recipient) is
refused with 400 and a JSON `errmsg` saying what is wrong, and nothing is kept. What is accepted is
committed to `SC_DATA_DIR/demo/inbox.sqlite` (0600: it holds phone numbers) before the answer, one
row per thing a recipient sees (a group message, one SMS per phone), the newest `MAX_MESSAGES` kept.
The inbox page (dashboard/pages/inbox.py) reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from core.secrets import private_file

log = logging.getLogger(__name__)

MAX_MESSAGES = 5000  # rows kept; the oldest go first
MAX_BODY = 256 * 1024  # a robot message is at most 20 KB; an SMS request far less
FOLLOW_S = 10.0  # a WeCom text this soon after a markdown message to the same group is its @-mention
SIGN_WINDOW_MS = 3_600_000  # DingTalk refuses a signature timestamp more than an hour off
WECOM_PATH = "/cgi-bin/webhook/send"
DINGTALK_PATH = "/robot/send"
SMS_PATH = "/sms/send"
CHANNELS = ("wecom", "dingtalk", "sms")
_ALERT_LINK_RE = re.compile(r"/alerts/([A-Za-z0-9][A-Za-z0-9_-]{0,80})")


def inbox_dir(data_dir: Path) -> Path:
    return data_dir / "demo"


def inbox_path(data_dir: Path) -> Path:
    return inbox_dir(data_dir) / "inbox.sqlite"


def _private_dir(data_dir: Path) -> Path:
    d = inbox_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


class Refused(Exception):
    """Not a request the real service would take: 400 with this text."""


@dataclass(frozen=True)
class Received:
    """One thing one recipient sees: a message in a group, or one SMS on one phone."""

    channel: str  # wecom | dingtalk | sms
    recipient: str  # the robot's key / access token (a group), or the phone number
    name: str  # the person's name (SMS); "" for a group
    title: str
    text: str
    markdown: bool  # the robots show markdown; an SMS is plain text
    mentions: tuple[str, ...] = ()  # mobiles @-mentioned in the group
    alert_id: str | None = None
    at: float = field(default_factory=time.time)
    id: int = 0  # the row, once kept

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "channel": self.channel, "recipient": self.recipient,
                "name": self.name, "title": self.title, "text": self.text, "markdown": self.markdown,
                "mentions": list(self.mentions), "alert_id": self.alert_id}


def _alert_of(text: str) -> str | None:
    m = _ALERT_LINK_RE.search(text)
    return m.group(1) if m else None


def _text(d: Any, key: str, what: str) -> str:
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, str) or not v.strip():
        raise Refused(f"{what}: `{key}` must be non-empty text")
    return v


def _mobiles(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Refused(f"{what} must be a list of mobile numbers")
    return tuple(v)


def _first_line(text: str) -> str:
    line = next((x for x in text.splitlines() if x.strip()), "")
    return line.lstrip("#").strip().strip("*").strip()


def parse_wecom(key: str, body: Any) -> list[Received]:
    """A WeCom group robot request as the group shows it."""
    if not isinstance(body, dict):
        raise Refused("the body must be a JSON object with `msgtype`")
    kind = body.get("msgtype")
    if kind == "markdown":
        content = _text(body.get("markdown"), "content", "markdown")
        return [Received("wecom", key, "", _first_line(content), content, True, alert_id=_alert_of(content))]
    if kind == "text":
        text = body.get("text")
        content = _text(text, "content", "text")
        mentions = _mobiles(text.get("mentioned_mobile_list"), "text.mentioned_mobile_list")
        return [Received("wecom", key, "", _first_line(content), content, False, mentions, _alert_of(content))]
    raise Refused(f"unknown msgtype {kind!r} (this receiver takes markdown and text)")


def parse_dingtalk(token: str, body: Any) -> list[Received]:
    """A DingTalk custom robot request as the group shows it."""
    if not isinstance(body, dict) or body.get("msgtype") != "markdown":
        raise Refused("the body must be a JSON object with msgtype markdown")
    md = body.get("markdown")
    title, text = _text(md, "title", "markdown"), _text(md, "text", "markdown")
    at = body.get("at") or {}
    if not isinstance(at, dict):
        raise Refused("`at` must be an object")
    mentions = _mobiles(at.get("atMobiles"), "at.atMobiles")
    return [Received("dingtalk", token, "", title, text, True, mentions, _alert_of(text))]


def parse_sms(body: Any) -> list[Received]:
    """An SMS gateway request: one message per phone."""
    if not isinstance(body, dict):
        raise Refused("the body must be a JSON object with `to` and `text`")
    text = _text(body, "text", "sms")
    to = body.get("to")
    if not isinstance(to, list) or not to:
        raise Refused("`to` must be a non-empty list of {name, phone}")
    out = []
    alert_id = body.get("alert_id") if isinstance(body.get("alert_id"), str) else _alert_of(text)
    for p in to:
        phone = _text(p, "phone", "to[]")
        name = p.get("name") if isinstance(p.get("name"), str) else ""
        out.append(Received("sms", phone, name, _first_line(text), text, False, alert_id=alert_id))
    return out


def dingtalk_sign(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), as DingTalk computes it."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class InboxStore:
    """The kept messages (SQLite, WAL: the receiver writes, the dashboard reads)."""

    def __init__(self, path: Path, max_messages: int = MAX_MESSAGES) -> None:
        self.path = path
        self.max_messages = max_messages
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        private_file(path)
        self._db = sqlite3.connect(str(path), timeout=10, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an answered message survives a power cut
            self._db.execute("""CREATE TABLE IF NOT EXISTS inbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, channel TEXT NOT NULL,
                recipient TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL,
                markdown INTEGER NOT NULL, mentions TEXT NOT NULL, alert_id TEXT)""")

    def add(self, items: list[Received]) -> None:
        """Keep `items` (all or none), then drop what is past the bound."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO inbox (at, channel, recipient, name, title, text, markdown, mentions, alert_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(r.at, r.channel, r.recipient, r.name, r.title, r.text, int(r.markdown),
                      orjson.dumps(list(r.mentions)).decode(), r.alert_id) for r in items])
                self._db.execute("DELETE FROM inbox WHERE id <= (SELECT MAX(id) FROM inbox) - ?", (self.max_messages,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def recent(self, limit: int = 200, channel: str | None = None, recipient: str | None = None) -> list[Received]:
        """Newest first, optionally of one channel and recipient."""
        where, args = [], []
        if channel:
            where.append("channel = ?")
            args.append(channel)
        if recipient:
            where.append("recipient = ?")
            args.append(recipient)
        sql = ("SELECT id, at, channel, recipient, name, title, text, markdown, mentions, alert_id FROM inbox"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [Received(channel=c, recipient=rc, name=n, title=t, text=x, markdown=bool(md),
                         mentions=tuple(orjson.loads(mn)), alert_id=a, at=at, id=i)
                for i, at, c, rc, n, t, x, md, mn, a in rows]

    def recipients(self) -> list[tuple[str, str, str, int]]:
        """(channel, recipient, name, messages) for each recipient, the most recently told first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, recipient, MAX(name), COUNT(*), MAX(id) AS last FROM inbox "
                "GROUP BY channel, recipient ORDER BY last DESC").fetchall()
        return [(c, r, n or "", int(k)) for c, r, n, k, _ in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- the demo's channels ---------------------------------------------------------------------------

DEMO_WECOM_KEY = "demo-duty-group"  # the street duty group's robot
DEMO_DINGTALK_TOKEN = "demo-duty-group"


def demo_secret(data_dir: Path) -> str:
    """The demo DingTalk robot's signing secret (made once, 0600)."""
    path = _private_dir(data_dir) / "dingtalk.secret"
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        private_file(path)
        path.write_text("SEC" + secrets.token_hex(32), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def demo_channels(data_dir: Path, port: int) -> Path:
    """Write the demo's channels file (alerts/channels/config.py): its WeCom and DingTalk robots and
    its SMS gateway, all this receiver on `127.0.0.1:port`. Returns its path."""
    base = f"http://127.0.0.1:{port}"
    text = (
        "# Written by `smartcommunity demo`: the demo's robots and SMS gateway are its local inbox\n"
        "# (alerts/inbox.py), read on the dashboard's inbox page.\n"
        "channels:\n"
        f"  - {{id: demo-wecom, kind: wecom, url: \"{base}{WECOM_PATH}?key={DEMO_WECOM_KEY}\"}}\n"
        f"  - {{id: demo-dingtalk, kind: dingtalk, url: \"{base}{DINGTALK_PATH}?access_token={DEMO_DINGTALK_TOKEN}\",\n"
        f"     secret: \"{demo_secret(data_dir)}\"}}\n"
        f"  - {{id: demo-sms, kind: sms, url: \"{base}{SMS_PATH}\"}}\n")
    path = _private_dir(data_dir) / "channels.yaml"
    private_file(path)
    path.write_text(text, encoding="utf-8")
    return path


# -- the receiver ------------------------------------------------------------------------------------

def make_app(store: InboxStore, wecom_keys: frozenset[str], dingtalk: dict[str, str]) -> Any:
    """The receiver as a Flask app: `wecom_keys` the robots' keys it answers for, `dingtalk` each
    access token's signing secret."""
    from flask import Flask, Response, request

    app = Flask("sc-demo-inbox")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    def answer(body: dict[str, Any], status: int = 200) -> Response:
        return Response(orjson.dumps(body), status=status, mimetype="application/json")

    def body_json() -> Any:
        raw = request.get_data(cache=False)
        if not raw:
            raise Refused("empty body (a JSON object is expected)")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Refused(f"the body is not JSON: {exc}") from None

    @app.errorhandler(Refused)
    def _refused(exc: Refused) -> Response:
        log.warning("refused %s: %s", request.path, exc)
        return answer({"errcode": 400, "errmsg": f"refused: {exc}"}, 400)

    @app.errorhandler(413)
    def _too_big(_exc: Exception) -> Response:
        return answer({"errcode": 413, "errmsg": f"body over {MAX_BODY} bytes"}, 413)

    @app.post(WECOM_PATH)
    def _wecom() -> Response:
        key = request.args.get("key", "")
        if key not in wecom_keys:
            return answer({"errcode": 93000, "errmsg": "invalid webhook url"})
        got = parse_wecom(key, body_json())
        last = store.recent(1, "wecom", key)
        if last and got[0].alert_id is None and got[0].at - last[0].at < FOLLOW_S:
            # The @-mention that follows an alert in the group (markdown cannot @ by mobile) is about that alert.
            got = [replace(r, alert_id=last[0].alert_id) for r in got]
        store.add(got)
        return answer({"errcode": 0, "errmsg": "ok"})

    @app.post(DINGTALK_PATH)
    def _dingtalk() -> Response:
        token = request.args.get("access_token", "")
        if token not in dingtalk:
            return answer({"errcode": 300001, "errmsg": "token is not exist"})
        secret = dingtalk[token]
        if secret:
            ts, sent = request.args.get("timestamp", ""), request.args.get("sign", "")
            if (not ts.isdigit() or abs(int(ts) - time.time() * 1000) > SIGN_WINDOW_MS
                    or not hmac.compare_digest(sent, dingtalk_sign(secret, ts))):
                return answer({"errcode": 310000, "errmsg": "sign not match"})
        store.add(parse_dingtalk(token, body_json()))
        return answer({"errcode": 0, "errmsg": "ok"})

    @app.post(SMS_PATH)
    def _sms() -> Response:
        store.add(parse_sms(body_json()))
        return answer({"code": 0, "message": "ok"})

    @app.get("/health")
    def _health() -> Response:
        return answer({"ok": True, "messages": store.count()})

    return app


def robots_of(targets: list[Any], port: int) -> tuple[frozenset[str], dict[str, str]]:
    """The WeCom keys and DingTalk tokens (with secrets) of the configured targets that point at
    this receiver's port: those it answers for."""
    from urllib.parse import parse_qs, urlsplit

    keys: set[str] = set()
    tokens: dict[str, str] = {}
    for t in targets:
        u = urlsplit(t.url or "")
        if u.hostname not in ("127.0.0.1", "localhost") or u.port != port:
            continue
        q = parse_qs(u.query)
        if t.kind == "wecom" and q.get("key"):
            keys.add(q["key"][0])
        elif t.kind == "dingtalk" and q.get("access_token"):
            tokens[q["access_token"][0]] = t.secret or ""
    return frozenset(keys), tokens


def serve(settings: Any, stop: threading.Event) -> None:
    """Run the receiver on 127.0.0.1:`SC_DEMO_INBOX_PORT` until `stop` is set."""
    from waitress import create_server

    from alerts.channels import load_targets

    port = int(settings.demo_inbox_port)
    keys, tokens = robots_of(load_targets(settings), port)
    store = InboxStore(inbox_path(settings.data_path))
    srv = create_server(make_app(store, keys, tokens), host="127.0.0.1", port=port, threads=4)
    th = threading.Thread(target=srv.run, name="demo-inbox", daemon=True)
    th.start()
    log.info("demo inbox on 127.0.0.1:%d (%d kept)", port, store.count())
    try:
        stop.wait()
    finally:
        srv.close()
        th.join(5)
        store.close()
