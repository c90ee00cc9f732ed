"""The local disk spool: where accepted points wait while InfluxDB is unreachable.

Layout (one directory per ingest worker, `SC_DATA_DIR/spool/ingest-N/`):
- `seg-000000000001.spool` … append-only segment files; each record is one write batch:
  `b"SCSP" | u32 length | u32 crc32(payload) | payload` (payload = newline-separated line protocol).
  Every append is fsync'd before the batch's messages are acknowledged to the broker.
- `cursor`: "segment offset" of the first record not yet replayed (atomically replaced, not
  fsync'd: after a crash a record may be replayed twice, which (series, ts) identity makes harmless).
- `lock`: flock'd by the owner, so two processes never share a spool.

A process always starts a new segment, so a torn tail left by a crash (power loss mid-append) is
only ever at the end of an older segment; the reader detects it by length/CRC and skips to the
next valid record (or the next segment), counting what it skipped.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"SCSP"
HEADER = struct.Struct("<4sII")
SEGMENT_MAX_BYTES = 16 * 1024 * 1024
_SEG_RE = re.compile(r"^seg-(\d{12})\.spool$")
_WORKER_RE = re.compile(r"ingest-(\d+)")  # one spool folder per ingest worker (Ingestor.name)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class SpoolFull(Exception):
    """The spool cannot take this batch: `disk_full` (ENOSPC) or over SC_SPOOL_MAX_BYTES."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class SpoolLocked(Exception):
    """Another process owns this spool directory."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    segment: int
    offset: int  # of the record's header
    end: int  # offset just past the record
    payload: bytes


def _seg_name(n: int) -> str:
    return f"seg-{n:012d}.spool"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Thread-safe: writer threads `append`, the replayer `peek`s and `commit`s in order."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_max = max(4096, min(SEGMENT_MAX_BYTES, max_bytes // 4))
        self._lock = threading.Lock()
        self._lockf = open(self.dir / "lock", "a+b")  # noqa: SIM115 - held for the spool's life
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockf.close()
            raise SpoolLocked(f"{self.dir} is in use by another process") from None
        self.skipped_bytes = 0  # corrupt or torn bytes skipped by the reader
        self._sizes: dict[int, int] = {}
        for p in self.dir.iterdir():
            m = _SEG_RE.match(p.name)
            if m:
                self._sizes[int(m.group(1))] = p.stat().st_size
        self._cursor = self._read_cursor()
        # Segments wholly before the cursor were replayed; a crash may have left them behind.
        for n in [n for n in self._sizes if n < self._cursor[0]]:
            self._unlink(n)
        self._active = max(self._sizes, default=0) + 1
        self._fd: int | None = None
        self._committed = 0  # bytes durably written to the active segment

    # -- bookkeeping -------------------------------------------------------------------------
    def _read_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return (min(self._sizes, default=1), 0)

    def _write_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        try:
            tmp.write_text(f"{self._cursor[0]} {self._cursor[1]}\n")
            os.replace(tmp, self.dir / "cursor")
        except OSError as exc:  # e.g. disk full: best effort, a stale cursor only means re-replaying
            log.warning("spool: cursor not saved (%s); replay continues from memory", exc)

    def _unlink(self, n: int) -> None:
        (self.dir / _seg_name(n)).unlink(missing_ok=True)
        self._sizes.pop(n, None)

    @property
    def bytes(self) -> int:
        """Bytes on disk, including not-yet-reclaimed replayed records of the oldest segment."""
        return sum(self._sizes.values())

    def pending_bytes(self) -> int:
        with self._lock:
            seg, off = self._cursor
            return sum(s for n, s in self._sizes.items() if n >= seg) - (off if seg in self._sizes else 0)

    def empty(self) -> bool:
        return self.pending_bytes() <= 0

    # -- writing -----------------------------------------------------------------------------
    def _open_active(self) -> int:
        if self._fd is None:
            path = self.dir / _seg_name(self._active)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._committed = 0
            self._sizes[self._active] = 0
            _fsync_dir(self.dir)
        return self._fd

    def append(self, payload: bytes) -> None:
        """Durably append one batch (fsync'd) or raise SpoolFull; never leaves a partial record."""
        rec = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self.bytes + len(rec) > self.max_bytes:
                raise SpoolFull("spool_full", f"{self.bytes} + {len(rec)} bytes > SC_SPOOL_MAX_BYTES={self.max_bytes}")
            if self._fd is not None and self._committed and self._committed + len(rec) > self.segment_max:
                os.close(self._fd)
                self._fd = None
                self._active += 1
            try:
                fd = self._open_active()
                view = memoryview(rec)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                self._rollback()
                if exc.errno in _DISK_FULL:
                    raise SpoolFull("disk_full", f"{self.dir}: {exc.strerror}") from None
                raise
            self._committed += len(rec)
            self._sizes[self._active] = self._committed

    def _rollback(self) -> None:
        """Cut a failed append back to the last whole record."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._committed)
        except OSError:  # the reader's CRC check still skips whatever is left
            log.exception("spool: could not truncate %s after a failed append", _seg_name(self._active))
        if self._committed == 0:  # an empty new segment: drop it rather than leave clutter
            os.close(self._fd)
            self._fd = None
            self._unlink(self._active)

    # -- reading -----------------------------------------------------------------------------
    def peek(self) -> SpoolRecord | None:
        """The oldest record not yet committed, or None. Skips (and counts) torn/corrupt bytes."""
        with self._lock:
            while True:
                seg, off = self._cursor
                if seg not in self._sizes:
                    later = [n for n in self._sizes if n > seg]
                    if not later:
                        return None
                    self._cursor = (min(later), 0)
                    continue
                limit = self._committed if seg == self._active else self._sizes[seg]
                if off >= limit:
                    if seg == self._active:
                        return None
                    self._finish_segment(seg)
                    continue
                rec = self._read_at(seg, off, limit)
                if rec is not None:
                    return rec
                # Torn or corrupt from `off`: resynchronise on the next valid record, if any.
                nxt = self._resync(seg, off + 1, limit)
                self.skipped_bytes += (nxt if nxt is not None else limit) - off
                log.error("spool: %s has %d unreadable bytes at %d (torn tail or corruption): skipped",
                          _seg_name(seg), (nxt if nxt is not None else limit) - off, off)
                if nxt is None:
                    if seg == self._active:
                        return None
                    self._finish_segment(seg)
                else:
                    self._cursor = (seg, nxt)

    def _read_at(self, seg: int, off: int, limit: int) -> SpoolRecord | None:
        with open(self.dir / _seg_name(seg), "rb") as fh:
            fh.seek(off)
            head = fh.read(HEADER.size)
            if len(head) < HEADER.size:
                return None
            magic, length, crc = HEADER.unpack(head)
            end = off + HEADER.size + length
            if magic != MAGIC or end > limit:
                return None
            payload = fh.read(length)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        return SpoolRecord(seg, off, end, payload)

    def _resync(self, seg: int, start: int, limit: int) -> int | None:
        data = (self.dir / _seg_name(seg)).read_bytes()[:limit]
        pos = data.find(MAGIC, start)
        while pos != -1:
            if self._read_at(seg, pos, limit) is not None:
                return pos
            pos = data.find(MAGIC, pos + 1)
        return None

    def _finish_segment(self, seg: int) -> None:
        self._unlink(seg)
        later = [n for n in self._sizes if n > seg]
        self._cursor = (min(later) if later else self._active, 0)
        self._write_cursor()

    def commit(self, rec: SpoolRecord) -> None:
        """Mark `rec` replayed; reclaims its segment once every record in it is."""
        with self._lock:
            if self._cursor != (rec.segment, rec.offset):
                return
            self._cursor = (rec.segment, rec.end)
            if rec.segment == self._active and rec.end >= self._committed and self._fd is not None:
                # Drained up to the writer: start the next append in a fresh segment, free this one.
                os.close(self._fd)
                self._fd = None
                self._active += 1
            if rec.segment != self._active and rec.end >= self._sizes.get(rec.segment, 0):
                self._finish_segment(rec.segment)
            else:
                self._write_cursor()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self._committed == 0:
                    self._unlink(self._active)
            self._lockf.close()


def adopt_orphan_spools(root: Path, workers: int, max_bytes: int) -> list[Spool]:
    """Open the spools left by workers `ingest-K`, K >= workers (after `--workers` went down), so
    that their points are replayed rather than stranded. A spool still locked by a live process
    is left to it."""
    out: list[Spool] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        m = _WORKER_RE.fullmatch(d.name)
        if not m or int(m.group(1)) < workers or not d.is_dir():
            continue
        try:
            spool = Spool(d, max_bytes)
        except SpoolLocked:
            continue
        if spool.empty():
            release_orphan(spool)
        else:
            log.warning("spool: replaying %d bytes left by %s (a worker that no longer runs)",
                        spool.pending_bytes(), d.name)
            out.append(spool)
    return out


def release_orphan(spool: Spool) -> None:
    """Close a drained orphan spool and remove its folder."""
    spool.close()
    shutil.rmtree(spool.dir, ignore_errors=True)
