"""Staff accounts for the dashboard pages (`SC_DATA_DIR/accounts.json`), PBKDF2-hashed passwords.

Managed with `smartcommunity users add|list|remove`; an acknowledgement made on the page is
signed with the account's display name.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

import orjson

ITERATIONS = 200_000
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def accounts_path(data_dir: Path) -> Path:
    return data_dir / "accounts.json"


def _hash(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


class Accounts:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return dict(orjson.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return {}

    def _save(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(users, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def any(self) -> bool:
        return bool(self._load())

    def list(self) -> list[tuple[str, str]]:
        return sorted((u, d["name"]) for u, d in self._load().items())

    def add(self, username: str, name: str, password: str) -> None:
        if not USERNAME_RE.match(username):
            raise ValueError("a username is 1-64 letters, digits, '.', '_' or '-'")
        if len(password) < 8:
            raise ValueError("a password has at least 8 characters")
        users = self._load()
        users[username] = {"name": name or username, "hash": _hash(password, secrets.token_bytes(16))}
        self._save(users)

    def remove(self, username: str) -> bool:
        users = self._load()
        if users.pop(username, None) is None:
            return False
        self._save(users)
        return True

    def verify(self, username: str, password: str) -> str | None:
        """The display name when the password is right, else None (same work either way)."""
        user = self._load().get(username)
        stored = user["hash"] if user else _hash("", b"0" * 16)
        _, iters, salt, _ = stored.split("$")
        ok = hmac.compare_digest(_hash(password, bytes.fromhex(salt), int(iters)), stored)
        return user["name"] if (user and ok) else None


def secret_key(data_dir: Path) -> bytes:
    """The session-signing key, made once per installation and kept private."""
    p = data_dir / "dashboard.secret"
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return p.read_bytes()
