"""A full data disk: how to tell one from an error, and how full the data folder's disk is.

Every part keeps warning on a full disk (alerts from memory, ingest holding, heartbeats written in
place); they all recognise "disk full" here, and the supervisor and `/api/health` judge the disk by
`usage()` against `FULL_PCT`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

# What staff read when their action could not be saved (the web, the alerts service's answer).
DISK_FULL_TEXT = "数据盘已满, 本次操作未能保存, 请稍后重试 (告警仍照常产生和推送)"
FULL_PCT = 90.0  # a data disk used past this is reported on the wall and by /api/health
_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(exc: BaseException) -> bool:
    """True for "no space left on device" (or over quota) and SQLite's "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in _ERRNOS:
        return True
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        # A full disk also shows as an I/O error when SQLite cannot create or extend its WAL index.
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc) or "disk I/O error" in str(exc)
    return "no space left on device" in str(exc).lower()


@dataclass(frozen=True, slots=True)
class Usage:
    path: str
    used_pct: float
    free_bytes: int
    total_bytes: int

    @property
    def full(self) -> bool:
        return self.used_pct >= FULL_PCT

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "used_pct": round(self.used_pct, 1), "free_mb": round(self.free_bytes / 2**20, 1),
                "total_mb": round(self.total_bytes / 2**20, 1)}


def usage(path: Path) -> Usage:
    """How full the file system holding `path` (or its nearest existing parent) is."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize  # what an unprivileged writer may still use
    used = total - st.f_bfree * st.f_frsize
    pct = 100.0 * used / (used + free) if used + free else 0.0
    return Usage(str(path), pct, free, total)
