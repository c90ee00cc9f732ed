"""The audit log: every state-changing action and every refusal, append-only (`SC_DATA_DIR/audit.jsonl`, 0600).

One JSON object a line: `seq`, `at` (ISO-8601, Beijing time), `actor` (account, `api-token`,
`anonymous`, `display:<link>` or `cli:<os user>`; an action by a personal API token is under its
account, with `detail.auth` = "token" and `detail.token_id`), `role`, `via` (console, api, login, cli),
`action`, `target`, `outcome` (ok / refused / failed), `status`, `addr` (the client address),
`detail`, and `prev` = SHA-256 of the previous line, so a deleted or edited line shows (`verify`).
Writers in several processes (the server, the CLI) take an exclusive `flock` for each append.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from core.secrets import private_file
from core.timebase import now_iso

GENESIS = "0" * 64
MAX_FIELD = 500


def audit_path(data_dir: Path) -> Path:
    return data_dir / "audit.jsonl"


def _clip(v: Any) -> Any:
    if isinstance(v, str) and len(v) > MAX_FIELD:
        return v[:MAX_FIELD] + "…"
    return v


def _last_line(fd: int) -> bytes | None:
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0:
        return None
    chunk = 4096
    pos = end
    buf = b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        stripped = buf.rstrip(b"\n")
        i = stripped.rfind(b"\n")
        if i >= 0:
            return stripped[i + 1:]
        chunk *= 2
    return buf.rstrip(b"\n") or None


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        private_file(path)

    def record(self, action: str, *, actor: str, outcome: str = "ok", role: str | None = None,
               via: str | None = None, target: str | None = None, status: int | None = None,
               addr: str | None = None, **detail: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": now_iso(), "actor": _clip(actor), "role": role, "via": via, "action": action,
            "target": _clip(target), "outcome": outcome, "status": status, "addr": addr,
        }
        if detail:
            entry["detail"] = {k: _clip(v) for k, v in detail.items()}
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = _last_line(fd)
            if last is None:
                entry["seq"], entry["prev"] = 1, GENESIS
            else:
                try:
                    entry["seq"] = int(orjson.loads(last).get("seq", 0)) + 1
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    entry["seq"] = -1
                entry["prev"] = hashlib.sha256(last).hexdigest()
            os.write(fd, orjson.dumps(entry) + b"\n")
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        try:
            return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]
        except FileNotFoundError:
            return []


def verify(path: Path) -> list[str]:
    """Problems found in the chain (empty: intact)."""
    problems: list[str] = []
    prev = GENESIS
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"line {n}: not JSON")
            prev = hashlib.sha256(line).hexdigest()
            continue
        if entry.get("prev") != prev:
            problems.append(f"line {n}: chain broken (a line before it was removed or changed)")
        if entry.get("seq") != n:
            problems.append(f"line {n}: seq {entry.get('seq')} out of order")
        prev = hashlib.sha256(line).hexdigest()
    return problems
