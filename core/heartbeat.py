"""Process heartbeats: each long-running part writes its counters to `SC_DATA_DIR/run/<name>.json`.

The dashboard reads them for `/api/health` and `/metrics`; a file older than `STALE_S` means
the part is down. Files, not sockets, so that any number of workers can report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

STALE_S = 10.0


def run_dir(data_dir: Path) -> Path:
    return data_dir / "run"


def write(data_dir: Path, name: str, payload: dict[str, Any]) -> None:
    d = run_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.{os.getpid()}.tmp"
    tmp.write_bytes(orjson.dumps({**payload, "pid": os.getpid(), "at": time.time()}))
    os.replace(tmp, d / f"{name}.json")


def read_all(data_dir: Path, prefix: str) -> list[dict[str, Any]]:
    """Every heartbeat whose name starts with `prefix`, each with `fresh` set."""
    out = []
    now = time.time()
    for p in sorted(run_dir(data_dir).glob(f"{prefix}*.json")):
        try:
            doc = orjson.loads(p.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        doc["name"] = p.stem
        doc["fresh"] = now - float(doc.get("at", 0)) < STALE_S
        out.append(doc)
    return out
