"""Staff accounts, for the dashboard pages, the /api and the CLI (`SC_DATA_DIR/accounts.json`, 0600, or
the PostgreSQL store: `open_accounts`): scrypt-hashed passwords and a role each.

Managed with `smartcommunity users add|list|remove|role|scope|person`; an acknowledgement made on the page is
signed with the account's display name. Roles, lowest first: viewer (wall and map, no actions),
operator (acknowledge, resolve, dispatch, shelve, note), admin (also accounts, rules, roster).
Accounts written before roles existed are operators. An account may be scoped to some communities
and/or device kinds (a community's grid worker, a gas company): its `Scope`; accounts written before
scopes existed, and those with the scope cleared, see everything. An account may stand for a person of
the on-call roster (`person`, a roster id: `users add NAME --person yl_duty`, `users person NAME ID`),
who then sets their own notification preferences on the dashboard's /settings page. Passwords hashed
by an older version (PBKDF2-SHA256) are still accepted and re-hashed with scrypt at the next sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from werkzeug.security import check_password_hash, generate_password_hash

from core.contract import COMMUNITIES, KINDS
from core.secrets import installation_key
from core.settings import Settings
from core.sqldb import Db, postgres_url

ROLES = ("viewer", "operator", "admin")  # lowest first
DEFAULT_ROLE = "operator"
# scrypt N=2**15, r=8, p=3: a row of OWASP's Password Storage table (32 MiB, ~0.3 s here).
HASH_METHOD = "scrypt:32768:8:3"
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
_dummy: list[str] = []


def _dummy_hash() -> str:
    """Checked when the account does not exist, so a wrong name costs what a wrong password costs."""
    if not _dummy:
        _dummy.append(generate_password_hash("not a password of anyone", method=HASH_METHOD))
    return _dummy[0]


def accounts_path(data_dir: Path) -> Path:
    return data_dir / "accounts.json"


def role_rank(role: str) -> int:
    try:
        return ROLES.index(role)
    except ValueError:
        return -1


@dataclass(frozen=True)
class Scope:
    """What an account may see: these communities (empty: every one) and these device kinds (empty:
    every one). `Scope()` is the whole street."""

    communities: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()

    @classmethod
    def of(cls, communities: Iterable[str] = (), kinds: Iterable[str] = ()) -> Scope:
        """A checked scope: unknown community slugs or kinds are a ValueError."""
        c, k = frozenset(communities), frozenset(kinds)
        bad = sorted(c - set(COMMUNITIES)) + sorted(k - set(KINDS))
        if bad:
            raise ValueError(f"unknown {', '.join(bad)}: communities are {', '.join(COMMUNITIES)}; "
                             f"kinds are {', '.join(KINDS)}")
        return cls(c, k)

    @classmethod
    def from_json(cls, doc: Any) -> Scope:
        """As kept in the account file; anything unreadable there is the narrowest scope, never the widest."""
        if not doc:
            return cls()
        try:
            c = frozenset(str(x) for x in doc.get("communities") or ())
            k = frozenset(str(x) for x in doc.get("kinds") or ())
        except (AttributeError, TypeError):
            return cls(frozenset({""}), frozenset({""}))
        return cls(c, k)

    def as_json(self) -> dict[str, list[str]]:
        return {"communities": sorted(self.communities), "kinds": sorted(self.kinds)}

    @property
    def everything(self) -> bool:
        return not self.communities and not self.kinds

    @property
    def key(self) -> str:
        """Stable text naming the scope: in cache keys of what is built per scope."""
        return "c=" + ",".join(sorted(self.communities)) + ";k=" + ",".join(sorted(self.kinds))

    def community(self, slug: str | None) -> bool:
        return not self.communities or slug in self.communities

    def kind(self, kind: str | None) -> bool:
        return not self.kinds or kind in self.kinds

    def allows(self, community: str | None, kind: str | None) -> bool:
        """A device or alert of `community` and `kind` (an alert of no kind, e.g. about a place, is
        seen only by a scope of every kind)."""
        return self.community(community) and self.kind(kind)

    def describe(self) -> str:
        """For `users list`: `all`, or `community=a,b kind=gas`."""
        if self.everything:
            return "all"
        parts = []
        if self.communities:
            parts.append("community=" + ",".join(sorted(self.communities)))
        if self.kinds:
            parts.append("kind=" + ",".join(sorted(self.kinds)))
        return " ".join(parts)


EVERYTHING = Scope()


@dataclass(frozen=True)
class Account:
    username: str
    name: str
    role: str
    scope: Scope = EVERYTHING
    person: str | None = None  # the on-call roster's id of this person (alerts/oncall.yaml people:)


def _check_legacy_pbkdf2(stored: str, password: str) -> bool:
    """The hashes written before scrypt: `pbkdf2_sha256$<iterations>$<salt hex>$<digest hex>`."""
    try:
        _, iters, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iters))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(HASH_METHOD + "$")


def check_password(stored: str, password: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        return _check_legacy_pbkdf2(stored, password)
    try:
        return check_password_hash(stored, password)
    except (ValueError, TypeError):
        return False


# In the PostgreSQL store: one row an account, the same fields as in the file.
PG_SCHEMA = "CREATE TABLE IF NOT EXISTS staff_accounts (username TEXT PRIMARY KEY, doc TEXT NOT NULL)"


class Accounts:
    """The account file, re-read when it changes on disk (the CLI edits it while the server runs); or,
    given a PostgreSQL URL, the accounts table of the store, read on every look (a handful of rows),
    so a change made on one host holds on every other at once."""

    def __init__(self, target: Path | str) -> None:
        self.path = target
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int], dict[str, dict[str, Any]]] | None = None
        self._sql: Db | None = None
        if isinstance(target, str):
            self._sql = Db(target)
            self._sql.script(PG_SCHEMA)

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._sql is not None:
            return {str(u): orjson.loads(d) for u, d in self._sql.execute("SELECT username, doc FROM staff_accounts")}
        assert isinstance(self.path, Path)
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return dict(self._cache[1])
            users = dict(orjson.loads(self.path.read_bytes()))
            self._cache = (key, users)
            return dict(users)

    def _save(self, users: dict[str, dict[str, Any]]) -> None:
        if self._sql is not None:
            with self._sql.transaction():
                gone = [u for (u,) in self._sql.execute("SELECT username FROM staff_accounts") if u not in users]
                self._sql.executemany("DELETE FROM staff_accounts WHERE username = ?", [(u,) for u in gone])
                self._sql.executemany(
                    "INSERT INTO staff_accounts (username, doc) VALUES (?, ?) "
                    "ON CONFLICT (username) DO UPDATE SET doc = excluded.doc",
                    [(u, orjson.dumps(d).decode()) for u, d in users.items()])
            return
        assert isinstance(self.path, Path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(users, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        with self._lock:
            self._cache = None

    def any(self) -> bool:
        return bool(self._load())

    def get(self, username: str) -> Account | None:
        d = self._load().get(username)
        if d is None:
            return None
        role = d.get("role") or DEFAULT_ROLE
        return Account(username, d.get("name") or username, role if role in ROLES else "viewer",
                       Scope.from_json(d.get("scope")), d.get("person"))

    def list(self) -> list[tuple[str, str]]:
        return sorted((u, d["name"]) for u, d in self._load().items())

    def accounts(self) -> list[Account]:
        return [a for u in sorted(self._load()) if (a := self.get(u)) is not None]

    def add(self, username: str, name: str, password: str, role: str | None = None,
            person: str | None = None) -> None:
        """Add an account or set its password (keeping its role and roster person unless given)."""
        if not USERNAME_RE.match(username):
            raise ValueError("a username is 1-64 letters, digits, '.', '_' or '-'")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
        if role is not None and role not in ROLES:
            raise ValueError(f"a role is one of {', '.join(ROLES)}")
        users = self._load()
        old = users.get(username, {})
        users[username] = {
            **old,  # its scope, if any, stays
            "name": name or old.get("name") or username,
            "hash": generate_password_hash(password, method=HASH_METHOD),
            "role": role or old.get("role") or DEFAULT_ROLE,
        }
        if person or old.get("person"):
            users[username]["person"] = person or old.get("person")
        self._save(users)

    def set_scope(self, username: str, scope: Scope) -> bool:
        """Scope an account (`Scope()`: clear it, the whole street); False when there is no such account."""
        users = self._load()
        if username not in users:
            return False
        entry = {k: v for k, v in users[username].items() if k != "scope"}
        if not scope.everything:
            entry["scope"] = scope.as_json()
        users[username] = entry
        self._save(users)
        return True

    def set_person(self, username: str, person: str | None) -> bool:
        """Link the account to a roster person (None: no longer); False if there is no such account."""
        users = self._load()
        if username not in users:
            return False
        users[username] = {k: v for k, v in users[username].items() if k != "person"}
        if person:
            users[username]["person"] = person
        self._save(users)
        return True

    def set_role(self, username: str, role: str) -> bool:
        if role not in ROLES:
            raise ValueError(f"a role is one of {', '.join(ROLES)}")
        users = self._load()
        if username not in users:
            return False
        users[username] = {**users[username], "role": role}
        self._save(users)
        return True

    def remove(self, username: str) -> bool:
        users = self._load()
        if users.pop(username, None) is None:
            return False
        self._save(users)
        return True

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account when the password is right, else None (about the same work either way).
        A right password under an old hash is re-hashed with scrypt on the spot."""
        d = self._load().get(username)
        stored = str(d["hash"]) if d else _dummy_hash()
        ok = check_password(stored, password)
        if not (d and ok):
            return None
        if needs_rehash(stored):
            users = self._load()
            if username in users and users[username].get("hash") == stored:
                users[username] = {**users[username], "hash": generate_password_hash(password, method=HASH_METHOD)}
                self._save(users)
        return self.get(username)

    def verify(self, username: str, password: str) -> str | None:
        """The display name when the password is right, else None."""
        acc = self.authenticate(username, password)
        return acc.name if acc else None


def open_accounts(settings: Settings) -> Accounts:
    """The staff accounts where `SC_STORE_URL` keeps the store: PostgreSQL (every host sees the same
    accounts), else `SC_DATA_DIR/accounts.json`."""
    return Accounts(postgres_url(settings.store_url) or accounts_path(settings.data_path))


def secret_key(data_dir: Path) -> bytes:
    """The signing key, made once per installation and kept private."""
    return installation_key(data_dir / "dashboard.secret")
