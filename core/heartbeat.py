"""Process heartbeats: each long-running part writes its counters to `SC_DATA_DIR/run/<name>.json`.

The dashboard reads them for `/api/health` and `/metrics`; a file older than `STALE_S` means
the part is down. Files, not sockets, so that any number of workers can report.

A heartbeat never ends a part: on a full disk (no room for the new file) it is written over the
old file in place, which needs no new blocks (files are padded to whole 4 KiB pages for that), and
the document then says `disk_full: true`; any other failure is logged and the beat skipped.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from core.diskfull import is_disk_full

log = logging.getLogger(__name__)

STALE_S = 10.0
_PAGE = 4096
_failed_at: dict[str, float] = {}  # name -> when a failure was last logged (one line a minute)


def run_dir(data_dir: Path) -> Path:
    return data_dir / "run"


def _padded(doc: dict[str, Any]) -> bytes:
    raw = orjson.dumps(doc)
    # Trailing blanks are valid JSON; whole pages let the next beat overwrite this one in place.
    return raw + b" " * (-len(raw) % _PAGE or 0)


def write(data_dir: Path, name: str, payload: dict[str, Any]) -> bool:
    """Write one beat; True if written (atomically or in place), False if it could not be (logged)."""
    d = run_dir(data_dir)
    path = d / f"{name}.json"
    tmp = d / f".{name}.{os.getpid()}.tmp"
    doc = {**payload, "pid": os.getpid(), "at": time.time()}
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(_padded(doc))
        os.replace(tmp, path)
        return True
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc) and _in_place(path, _padded({**doc, "disk_full": True})):
            return True
        _say(name, exc)
        return False


def _in_place(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size < len(data):
            return False  # growing the file would need blocks the disk does not have
        os.pwrite(fd, data.ljust(os.fstat(fd).st_size, b" "), 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _say(name: str, exc: OSError) -> None:
    now = time.monotonic()
    if now - _failed_at.get(name, -1e9) >= 60.0:
        _failed_at[name] = now
        log.error("heartbeat %s not written (the part keeps running): %s", name, exc)


def read_all(data_dir: Path, prefix: str) -> list[dict[str, Any]]:
    """Every heartbeat whose name starts with `prefix`, each with `fresh` set."""
    out = []
    now = time.time()
    for p in sorted(run_dir(data_dir).glob(f"{prefix}*.json")):
        doc = None
        for _ in range(2):  # a beat written in place may be read half-written: read it again
            try:
                doc = orjson.loads(p.read_bytes())
                break
            except (OSError, orjson.JSONDecodeError):
                doc = None
        if not isinstance(doc, dict):
            continue
        doc["name"] = p.stem
        doc["fresh"] = now - float(doc.get("at", 0)) < STALE_S
        out.append(doc)
    return out


def cannot_write(data_dir: Path) -> list[str]:
    """Names of the live parts whose last beat says they could not write to the data disk (what
    they could not write is kept in memory: the alert store's rows, outbox lines, dead letters)."""
    out = []
    for prefix in ("ingest", "alerts"):
        for hb in read_all(data_dir, prefix):
            if not hb.get("fresh") or hb.get("stopped"):
                continue
            store = hb.get("store") or {}
            if (hb.get("disk_full") or store.get("holding") or store.get("degraded") or hb.get("outbox_held")
                    or hb.get("holding_reason") == "disk_full"):
                out.append(str(hb.get("name")))
    return out


def clock_skew(data_dir: Path) -> tuple[float, int] | None:
    """Mean (arrival − device timestamp) in seconds over the live ingest workers' recent readings,
    weighted by how many each saw, and that count; None before any reading."""
    total = n = 0.0
    for hb in read_all(data_dir, "ingest"):
        count = int(hb.get("clock_skew_n") or 0)
        if not hb.get("fresh") or hb.get("stopped") or not count or hb.get("clock_skew_ms") is None:
            continue
        total += float(hb["clock_skew_ms"]) * count
        n += count
    return (total / n / 1000, int(n)) if n else None
