"""How much of the disk each part's folder under SC_DATA_DIR takes, scanned now and then.

A walk of the data directory costs a stat per file (InfluxDB's shards, the spool's segments): a
background thread does it every `SC_DATA_SCAN_S`, never a request. `/api/health` (the disk entry)
and `/metrics` (`sc_data_dir_bytes{folder=...}`) read the last scan; the disk entry warns when the
data directory holds more than `SC_DATA_DIR_MAX_PCT` of its disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LOOSE = "(files)"  # files directly in SC_DATA_DIR, not in a part's folder


def tree_bytes(path: str) -> int:
    """Bytes on disk (allocated blocks) under `path`, symlinks not followed; vanishing files skipped."""
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


def folder_sizes(data_path: Path) -> dict[str, int]:
    """Top-level folder of SC_DATA_DIR → bytes on disk; loose files summed under LOOSE."""
    out: dict[str, int] = {}
    try:
        entries = list(os.scandir(data_path))
    except OSError:
        return out
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                out[entry.name] = tree_bytes(entry.path) + entry.stat(follow_symlinks=False).st_blocks * 512
            else:
                out[LOOSE] = out.get(LOOSE, 0) + entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
    return out


@dataclass
class Scan:
    folders: dict[str, int] = field(default_factory=dict)
    total_bytes: int = 0
    disk_bytes: int = 0  # the size of the disk the data directory is on
    at: float | None = None  # when it was taken (None: not yet)
    took_s: float = 0.0

    @property
    def share_pct(self) -> float:
        return 100.0 * self.total_bytes / self.disk_bytes if self.disk_bytes else 0.0


class DataSizes:
    """The last scan of SC_DATA_DIR, refreshed every `every_s` by a daemon thread started on first use."""

    def __init__(self, data_path: Path, every_s: float) -> None:
        self.data_path = data_path
        self.every_s = every_s
        self._scan = Scan()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scan_now(self) -> Scan:
        t0 = time.monotonic()
        folders = folder_sizes(self.data_path)
        try:
            st = os.statvfs(self.data_path)
            disk = st.f_blocks * st.f_frsize
        except OSError:
            disk = 0
        scan = Scan(folders, sum(folders.values()), disk, time.time(), round(time.monotonic() - t0, 3))
        self._scan = scan
        return scan

    def _loop(self) -> None:
        while True:
            try:
                self.scan_now()
            except Exception:  # a scan must never take the dashboard down
                log.exception("data directory scan failed")
            if self._stop.wait(self.every_s):
                return

    def latest(self) -> Scan:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="sc-datasize", daemon=True)
                self._thread.start()
        return self._scan

    def close(self) -> None:
        self._stop.set()
