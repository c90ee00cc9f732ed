"""Server-side sign-in state (`SC_DATA_DIR/sessions.sqlite`, 0600, or the PostgreSQL store): sessions,
failed sign-ins, display links.

The browser holds only a random session id; the store keeps its SHA-256, so a copy of the file opens
nothing. A session ends on sign-out, when its account is removed or its password changed
(`smartcommunity users ...` deletes the rows from its own process; the server sees it on the next
request), after `dashboard_session_idle_s` without a request, and `dashboard_session_max_s` after
sign-in. A display-link session lives until its link is revoked.

Personal API tokens (`smartcommunity users token NAME`): `sct_<id>_<secret>`, 256 random bits, of
which the store keeps only the SHA-256 (a high-entropy secret needs no slow hash); a token acts as
its account, with the account's role at the time of each request, until revoked or the account is
removed.

Sign-in throttling: every refused attempt (wrong password or too early) is counted per account and
per address over `WINDOW_S`; past the free attempts each further one must wait 2**(n - free) seconds
after the previous attempt, up to `MAX_DELAY_S`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings
from core.sqldb import Db, postgres_url

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, kind TEXT NOT NULL, link_id TEXT,
  csrf TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL, addr TEXT);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(username);
CREATE TABLE IF NOT EXISTS signin_failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS signin_failures_key ON signin_failures(key, at);
CREATE TABLE IF NOT EXISTS display_links (
  link_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, label TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
  token_id TEXT PRIMARY KEY, username TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, label TEXT NOT NULL,
  created REAL NOT NULL, last_used REAL);
CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens(username);
"""

WINDOW_S = 900.0
ACCOUNT_FREE = 5  # wrong passwords per account per window before the delays start
ADDRESS_FREE = 20  # refused attempts per address per window (any accounts)
MAX_DELAY_S = 300.0
TOUCH_EVERY_S = 30.0  # last_seen is written at most this often per session (or a tenth of the idle limit)
DISPLAY_KIND = "display"
STAFF_KIND = "staff"
TOKEN_PREFIX = "sct_"


def sessions_path(data_dir: Path) -> Path:
    return data_dir / "sessions.sqlite"


def _h(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id_hash: str
    username: str
    kind: str
    link_id: str | None
    csrf: str
    created: float
    last_seen: float


class SessionStore:
    """Sessions, failed sign-ins, display links and tokens: in `target`, the SQLite file (a Path) or the
    PostgreSQL store (a URL): `open_sessions` picks by `SC_STORE_URL`."""

    def __init__(self, target: Path | str, idle_s: float = 12 * 3600, max_s: float = 24 * 3600) -> None:
        self.path = target
        self.idle_s = idle_s
        self.max_s = max_s
        self.db = Db(target)
        self.db.script(SCHEMA)

    # -- sessions --------------------------------------------------------------------------------
    def create(self, username: str, kind: str = STAFF_KIND, link_id: str | None = None,
               addr: str | None = None) -> tuple[str, Session]:
        """A new session: (the token for the cookie, the session)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        s = Session(_h(token), username, kind, link_id, secrets.token_urlsafe(32), now, now)
        self.db.execute(
            "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
            (s.id_hash, username, kind, link_id, s.csrf, now, now, addr),
        )
        return token, s

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie value; an expired one is deleted and None returned."""
        if not token or len(token) > 100:
            return None
        id_hash = _h(token)
        db = self.db
        row = db.execute(
            "SELECT id_hash, username, kind, link_id, csrf, created, last_seen FROM sessions WHERE id_hash=?",
            (id_hash,),
        ).fetchone()
        if row is None:
            return None
        s = Session(*row)
        now = time.time()
        if s.kind == DISPLAY_KIND:
            if s.link_id is None or not self.link_exists(s.link_id):
                self.end(token)
                return None
        elif now - s.last_seen > self.idle_s or now - s.created > self.max_s:
            self.end(token)
            return None
        if now - s.last_seen > min(TOUCH_EVERY_S, self.idle_s / 10):
            db.execute("UPDATE sessions SET last_seen=? WHERE id_hash=?", (now, id_hash))
        return s

    def end(self, token: str | None) -> bool:
        if not token:
            return False
        return self.db.execute("DELETE FROM sessions WHERE id_hash=?", (_h(token),)).rowcount > 0

    def end_user(self, username: str) -> int:
        """End every session of an account (removed, password changed); the number ended."""
        return int(self.db.execute("DELETE FROM sessions WHERE username=?", (username,)).rowcount)

    def count(self, username: str | None = None) -> int:
        q, args = ("SELECT count(*) FROM sessions", ()) if username is None else (
            "SELECT count(*) FROM sessions WHERE username=?", (username,))
        return int(self.db.execute(q, args).fetchone()[0])

    def purge_expired(self) -> int:
        now = time.time()
        return int(self.db.execute(
            "DELETE FROM sessions WHERE kind!=? AND (last_seen<? OR created<?)",
            (DISPLAY_KIND, now - self.idle_s, now - self.max_s),
        ).rowcount)

    # -- sign-in throttling -------------------------------------------------------------------------
    def _wait(self, key: str, free: int, now: float) -> float:
        rows = self.db.execute(
            "SELECT count(*), max(at) FROM signin_failures WHERE key=? AND at>?", (key, now - WINDOW_S)
        ).fetchone()
        n, last = int(rows[0]), rows[1]
        if n < free or last is None:
            return 0.0
        return max(0.0, last + min(MAX_DELAY_S, 2.0 ** (n - free)) - now)

    def signin_wait(self, username: str, addr: str) -> float:
        """Seconds before a sign-in attempt for this account from this address may be tried (0: now)."""
        now = time.time()
        return max(self._wait("u:" + username, ACCOUNT_FREE, now), self._wait("a:" + addr, ADDRESS_FREE, now))

    def signin_failed(self, username: str, addr: str) -> None:
        now = time.time()
        db = self.db
        db.execute("DELETE FROM signin_failures WHERE at<?", (now - WINDOW_S,))
        db.executemany("INSERT INTO signin_failures VALUES (?,?)", [("u:" + username, now), ("a:" + addr, now)])

    def signin_succeeded(self, username: str) -> None:
        self.db.execute("DELETE FROM signin_failures WHERE key=?", ("u:" + username,))

    # -- display links ------------------------------------------------------------------------------
    def new_link(self, label: str) -> tuple[str, str]:
        """A new display link: (link id, secret token for its URL)."""
        link_id = secrets.token_hex(4)
        token = secrets.token_urlsafe(32)
        self.db.execute("INSERT INTO display_links VALUES (?,?,?,?)", (link_id, _h(token), label, time.time()))
        return link_id, token

    def link_for(self, token: str) -> tuple[str, str] | None:
        """(link id, label) of a valid display-link token."""
        if not token or len(token) > 100:
            return None
        row = self.db.execute(
            "SELECT link_id, label FROM display_links WHERE token_hash=?", (_h(token),)
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def link_label(self, link_id: str) -> str | None:
        row = self.db.execute("SELECT label FROM display_links WHERE link_id=?", (link_id,)).fetchone()
        return str(row[0]) if row else None

    def link_exists(self, link_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM display_links WHERE link_id=?", (link_id,)).fetchone() is not None

    def links(self) -> list[tuple[str, str, float, int]]:
        """(link id, label, created, open sessions) of every display link."""
        return [
            (str(r[0]), str(r[1]), float(r[2]), int(r[3]))
            for r in self.db.execute(
                "SELECT l.link_id, l.label, l.created, (SELECT count(*) FROM sessions s WHERE s.link_id=l.link_id)"
                " FROM display_links l ORDER BY l.created"
            )
        ]

    def revoke_link(self, link_id: str | None = None) -> int:
        """Revoke one display link (or all with None) and end its sessions; the number revoked."""
        db = self.db
        if link_id is None:
            n = db.execute("DELETE FROM display_links").rowcount
            db.execute("DELETE FROM sessions WHERE kind=?", (DISPLAY_KIND,))
        else:
            n = db.execute("DELETE FROM display_links WHERE link_id=?", (link_id,)).rowcount
            db.execute("DELETE FROM sessions WHERE link_id=?", (link_id,))
        return int(n)

    # -- personal API tokens --------------------------------------------------------------------------
    def new_token(self, username: str, label: str) -> tuple[str, str]:
        """A new personal token of `username`: (token id, the token, shown once)."""
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        self.db.execute("INSERT INTO api_tokens VALUES (?,?,?,?,?,NULL)",
                           (token_id, username, _h(token), label, time.time()))
        return token_id, token

    def token_user(self, token: str) -> tuple[str, str] | None:
        """(username, token id) of a live personal token, else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        db = self.db
        row = db.execute("SELECT username, token_id, last_used FROM api_tokens WHERE token_hash=?",
                         (_h(token),)).fetchone()
        if row is None:
            return None
        now = time.time()
        if row[2] is None or now - float(row[2]) > TOUCH_EVERY_S:
            db.execute("UPDATE api_tokens SET last_used=? WHERE token_id=?", (now, row[1]))
        return str(row[0]), str(row[1])

    def tokens(self, username: str | None = None) -> list[tuple[str, str, str, float, float | None]]:
        """(token id, username, label, created, last used) of every personal token (of one account)."""
        q = "SELECT token_id, username, label, created, last_used FROM api_tokens"
        rows = (self.db.execute(q + " WHERE username=? ORDER BY created", (username,)) if username
                else self.db.execute(q + " ORDER BY created"))
        return [(str(r[0]), str(r[1]), str(r[2]), float(r[3]), None if r[4] is None else float(r[4])) for r in rows]

    def revoke_token(self, username: str, token_id: str | None = None) -> int:
        """Revoke one personal token of `username` (or all of them with None); the number revoked."""
        if token_id is None:
            q, args = "DELETE FROM api_tokens WHERE username=?", (username,)
        else:
            q, args = "DELETE FROM api_tokens WHERE username=? AND token_id=?", (username, token_id)
        return int(self.db.execute(q, args).rowcount)

    def close(self) -> None:
        self.db.close()


def open_sessions(settings: Settings, idle_s: float | None = None, max_s: float | None = None) -> SessionStore:
    """The sign-in state where `SC_STORE_URL` keeps the store: PostgreSQL (shared by every dashboard
    host), else `SC_DATA_DIR/sessions.sqlite`."""
    return SessionStore(postgres_url(settings.store_url) or sessions_path(settings.data_path),
                        settings.dashboard_session_idle_s if idle_s is None else idle_s,
                        settings.dashboard_session_max_s if max_s is None else max_s)
