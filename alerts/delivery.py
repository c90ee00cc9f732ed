"""Durable, independent delivery of notifications.

The outbox (`SC_DATA_DIR/alerts/outbox.jsonl`, mode 0600: it holds names and phone numbers; on
PostgreSQL a table of the store, see below) is the source of truth: every notification is one JSON
line, appended under an exclusive lock and fsync'd before anything is sent, by any process (the alert
engine, the dashboard's dispatch).

Each target (one robot, one mail server, one webhook) has its own thread and its own cursor file
(`SC_DATA_DIR/alerts/cursors/<target>.json`, as the ingest spool keeps its cursor): the offset below
which every line is finished, the finished lines past it, and the robot's recent sends. A restart
resumes from the cursors, so what was pending is sent, once per target; a dead endpoint only ever
holds up its own thread. A failed notification is retried with exponential backoff (doubling from
`SC_NOTIFY_RETRY_FIRST_S` up to `SC_NOTIFY_RETRY_MAX_S`) while later ones go on, and given up
`SC_NOTIFY_GIVE_UP_S` after it was written; every attempt that fails, every delivery and every
give-up is a `notified` step in the alert's timeline. Past a robot's rate limit (or after the robot
says "too fast"), what is due goes out as one digest message when the next slot frees: never dropped.

One process delivers from an outbox (an flock on the cursors' folder): a second alert engine on the
same data folder only appends, and takes over when the first ends.

With the alert store on PostgreSQL (engines on several hosts, `SC_STORE_URL=postgresql://...`) the
outbox and the cursors are the store's instead (`alerts/store/outbox.py` `TableOutbox`: tables `outbox`
and `outbox_cursors`, one partition's under its lease's name, positions are sequence numbers): the engine that takes a
dead one's lease over claims its cursors and goes on where it stopped, each pending notification sent
once per target. The workers are the same over both (`BaseOutbox`). An append is one INSERT; while
the database cannot be reached it is held in memory and delivered from there, as on a full disk.

Once every target has finished every line and the outbox is past 8 MB, the service starts a fresh
one (the previous kept as `outbox.jsonl.1`) and the cursors restart at 0 (`Delivery.compact`); the
table drops what every target has finished a day after it was written.

A crash between the far end's "ok" and the cursor's replacement would send that one notification
again (at-least-once for that instant): the window is one file write, or on PostgreSQL one statement
(the cursor's upsert), after which the engine taking over sends it again. The cursor file is not
fsync'd (as the ingest spool's): a power cut may repeat the last notifications, never lose them.
Timeline steps are written by one recorder thread in batches, so a busy database never holds up a
delivery.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from alerts.channels.base import Channel, DeliveryError, Target
from alerts.channels.config import make_channel
from alerts.message import Message, digest
from alerts.roster import Person
from core.diskfull import is_disk_full
from core.secrets import private_file
from core.timebase import iso_ms

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a target looks for lines other processes appended
MAX_DIGEST = 50  # notifications in one digest at most (the rest: the next digest)
COMPACT_BYTES = 8 << 20  # the outbox starts afresh past this, once every target has finished it


def outbox_path(data_dir: Path) -> Path:
    return data_dir / "alerts" / "outbox.jsonl"


def cursor_dir(data_dir: Path) -> Path:
    return data_dir / "alerts" / "cursors"


class Superseded(Exception):
    """Another process has taken over a target's cursor (an engine that took over the partition)."""


class BaseOutbox:
    """What the targets' workers read: entries at increasing positions, and each target's cursor.

    Two backends: the JSON-lines file (`Outbox`, positions are byte offsets) and the store's table
    (`TableOutbox`, positions are sequence numbers). An entry that cannot be written (the disk full,
    the database away: `holdable`) is held in memory (`held`, numbered from 1) and this process's
    targets deliver it from there at once; it is written, with its own time, when it can be again
    (`retry`), and the targets then skip it where it was written (they know its id)."""

    name = "outbox"  # what the logs call it

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.generation = 0  # local appends so far (a worker that saw them all may sleep)
        self.held: list[tuple[int, dict[str, Any]]] = []
        self.held_seq = 0
        self._held_lock = threading.Lock()
        self._tried_at = 0.0
        self.consumed = 0  # the position after the last entry `read` returned

    # -- the backend --------------------------------------------------------------------------------
    def holdable(self, exc: BaseException) -> bool:
        """A write that failed with this is held, not lost."""
        raise NotImplementedError

    def _write(self, entry: dict[str, Any]) -> None:
        raise NotImplementedError

    def size(self) -> int:
        """The position past the last entry (a new target's cursor starts there)."""
        raise NotImplementedError

    def read(self, offset: int) -> list[tuple[int, dict[str, Any] | None]]:
        """Entries from `offset` on: (position, entry or None if unreadable); sets `consumed`."""
        raise NotImplementedError

    def load_cursor(self, target: str, claim: bool = False) -> dict[str, Any] | None:
        """A target's cursor as saved (None: none yet); `claim`: this process delivers for it from now on."""
        raise NotImplementedError

    def save_cursor(self, target: str, state: dict[str, Any]) -> None:
        """Raises `Superseded` when another process has claimed the target since."""
        raise NotImplementedError

    def still_mine(self, target: str) -> bool:
        """Nobody else has claimed the target (checked before each send)."""
        return True

    def drop_cursors(self, keep: set[str]) -> None:
        """Remove the cursors of targets not in `keep`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what it holds open (used again, it opens it again)."""

    # -- appending, held when it cannot be written ----------------------------------------------------
    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry.setdefault("id", uuid.uuid4().hex)
        entry.setdefault("at", time.time())
        with self._held_lock:
            if self.held:
                self._retry_locked(throttled=True)
            if not self.held:
                try:
                    self._write(entry)
                except Exception as exc:
                    if not self.holdable(exc):
                        raise
                    log.critical("OUTBOX CANNOT WRITE (%s): notifications are delivered from memory and "
                                 "written when it can be again", exc)
                    self._hold(entry)
                return self._told(entry)
            self._hold(entry)
        return self._told(entry)

    def _hold(self, entry: dict[str, Any]) -> None:
        self.held_seq += 1
        self.held.append((self.held_seq, entry))
        self._tried_at = time.monotonic()

    def _told(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()
        return entry

    def held_after(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        with self._held_lock:
            return [(n, e) for n, e in self.held if n > seq]

    def retry(self) -> None:
        """Write the held entries (at most one try a second); they keep their order and times."""
        if not self.held or time.monotonic() - self._tried_at < 1.0:
            return
        with self._held_lock:
            self._retry_locked()

    # The file is retried on every append while it holds (a full disk answers at once); the table
    # at most once a second (the workers' `retry`), so the hot path never waits for a dead server.
    RETRY_ON_APPEND = True

    def _retry_locked(self, throttled: bool = False) -> None:
        if throttled and not self.RETRY_ON_APPEND:
            return
        self._tried_at = time.monotonic()
        while self.held:
            try:
                self._write(self.held[0][1])
            except Exception as exc:
                if not self.holdable(exc):
                    raise
                return
            self.held.pop(0)
            if not self.held:
                log.warning("outbox writing again: the notifications held in memory are written")


class Outbox(BaseOutbox):
    """Append-only JSON lines, shared by processes (flock), readable from any byte offset; each target's
    cursor a file of `cursors` (default: the `cursors` folder beside it)."""

    def __init__(self, path: Path, cursors: Path | None = None) -> None:
        super().__init__()
        self.path = path
        self.name = str(path)
        self.cursors = cursors or path.parent / "cursors"
        private_file(path)

    def holdable(self, exc: BaseException) -> bool:
        return isinstance(exc, OSError) and is_disk_full(exc)

    def _write(self, entry: dict[str, Any]) -> None:
        line = orjson.dumps(entry) + b"\n"
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break  # still the current file (not compacted away while we waited for the lock)
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            size = os.fstat(fd).st_size
            # A torn last line (a crash mid-write) is closed off, so this one starts on its own line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            n = os.write(fd, line)
            try:
                os.fsync(fd)
            except OSError:
                n = -1
            if n != len(line):  # a short write on a full disk: cut it off, the line is held instead
                os.ftruncate(fd, size)
                raise OSError(28, "No space left on device (short write)")
        finally:
            os.close(fd)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def read(self, offset: int, max_bytes: int = 4 << 20) -> list[tuple[int, dict[str, Any] | None]]:
        """Complete lines from `offset`: (offset of the line, entry or None if unreadable)."""
        with self.path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(max_bytes)
        out: list[tuple[int, dict[str, Any] | None]] = []
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            raw = data[pos:nl]
            if raw.strip():
                try:
                    entry = orjson.loads(raw)
                    out.append((offset + pos, entry if isinstance(entry, dict) else None))
                except orjson.JSONDecodeError:
                    out.append((offset + pos, None))
            pos = nl + 1
        self.consumed = offset + pos
        return out

    def cursor_file(self, target: str) -> Path:
        return self.cursors / f"{target}.json"

    def load_cursor(self, target: str, claim: bool = False) -> dict[str, Any] | None:
        # One process delivers from the file (Delivery's flock): there is nothing to claim.
        try:
            d = orjson.loads(self.cursor_file(target).read_bytes())
        except FileNotFoundError:
            return None
        if not isinstance(d, dict):
            raise ValueError("not a cursor")
        return d

    def save_cursor(self, target: str, state: dict[str, Any]) -> None:
        path = self.cursor_file(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(state))
        finally:
            os.close(fd)
        # Atomically replaced, not fsync'd (as the ingest spool's cursor): a killed process loses nothing;
        # a power cut may lose the last moves, and those notifications go out a second time.
        os.replace(tmp, path)

    def drop_cursors(self, keep: set[str]) -> None:
        for f in self.cursors.glob("*.json"):
            if f.stem not in keep:
                f.unlink(missing_ok=True)


@dataclass
class Pending:
    offset: int
    entry: dict[str, Any]
    message: Message
    people: list[Person]
    attempts: int = 0
    next_at: float = 0.0


@dataclass
class RetryPolicy:
    first_s: float = 1.0
    max_s: float = 120.0
    give_up_s: float = 3600.0

    def delay(self, attempts: int) -> float:
        return min(self.max_s, self.first_s * (2 ** max(0, attempts - 1)))


Record = Callable[[str, str, dict[str, Any]], None]  # (alert_id, event, data)


@dataclass
class CursorState:
    offset: int = 0
    done: set[int] = field(default_factory=set)
    sent: list[float] = field(default_factory=list)  # epoch of recent sends (the rate window)
    blocked_until: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "done": sorted(self.done), "sent": self.sent,
                "blocked_until": self.blocked_until}


class TargetWorker(threading.Thread):
    """One target's delivery loop over the outbox."""

    def __init__(self, channel: Channel, outbox: BaseOutbox, record: Record | None,
                 policy: RetryPolicy, public_url: str | None = None) -> None:
        super().__init__(name=f"notify-{channel.target.id}", daemon=True)
        self.channel = channel
        self.target: Target = channel.target
        self.outbox = outbox
        self.record = record
        self.policy = policy
        self.public_url = public_url
        self.stop_event = threading.Event()
        self.state = self._load_state()
        self.read_pos = self.state.offset
        self.order: list[int] = []  # offsets read, in order, not yet below the low-water mark
        self.pending: dict[int, Pending] = {}
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0
        self.digests = 0
        self.last_error: str | None = None
        self._seen_size = -1
        self.held_seen = 0  # the outbox's held lines taken up so far (their number)
        self.from_memory: set[str] = set()  # ids of lines taken up from memory (skipped in the outbox)
        self._save_failed = False
        self.lock = threading.Lock()  # held while a round runs; compaction takes it to find the worker idle

    # -- cursor ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the cursor again and claim it (before the thread starts): as the last owner left it."""
        self.state = self._load_state(claim=True)
        self.read_pos, self.order, self.pending, self._seen_size = self.state.offset, [], {}, -1

    def _load_state(self, claim: bool = False) -> CursorState:
        try:
            d = self.outbox.load_cursor(self.target.id, claim)
            if d is not None:
                return CursorState(int(d["offset"]), {int(x) for x in d.get("done", [])},
                                   [float(x) for x in d.get("sent", [])], float(d.get("blocked_until", 0)))
            # A new target starts at the end: it is not flooded with the history of the outbox.
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, OSError) and self.outbox.holdable(exc):
                raise
            log.error("cursor of %s in %s unreadable (%s): starting it at the end of the outbox",
                      self.target.id, self.outbox.name, exc)
        st = CursorState(offset=self.outbox.size())
        self._save(st)
        return st

    def _save(self, st: CursorState | None = None) -> None:
        st = st or self.state
        try:
            self.outbox.save_cursor(self.target.id, st.as_json())
            self._save_failed = False
        except Superseded:
            self._superseded()
        except Exception as exc:
            if not self.outbox.holdable(exc):
                raise
            if not self._save_failed:  # kept in memory; a crash meanwhile may send some twice, never lose one
                log.error("cursor of %s not saved (%s): kept in memory meanwhile", self.target.id, exc)
            self._save_failed = True

    def _superseded(self) -> None:
        if not self.stop_event.is_set():
            log.error("%s: another process now delivers for this target (it took the cursor over): this one "
                      "stops", self.target.id)
        self.stop_event.set()

    def _finish(self, offsets: list[int]) -> None:
        self.state.done.update(offsets)
        for off in offsets:
            self.pending.pop(off, None)
        # Move the low-water mark over every finished line at its front.
        while self.order and self.order[0] in self.state.done:
            off = self.order.pop(0)
            self.state.done.discard(off)
        self.state.offset = self.order[0] if self.order else self.read_pos
        self.state.done = {o for o in self.state.done if o >= self.state.offset}
        self._save()

    # -- reading -------------------------------------------------------------------------------
    def _read_new(self) -> None:
        size = self.outbox.size()
        if size < self.read_pos:  # replaced by a shorter file (not by compaction, which resets us): start over
            log.error("%s shrank below %s's cursor: reading it from the start", self.outbox.name,
                      self.target.id)
            self.read_pos, self.order, self.pending = 0, [], {}
            self.state.offset, self.state.done = 0, set()
        if self.outbox.held_seq != self.held_seen:
            self._read_held()
        if size <= self.read_pos:
            return
        lines = self.outbox.read(self.read_pos)
        skipped: list[int] = []
        for off, entry in lines:
            self.order.append(off)
            if entry is not None and entry.get("id") in self.from_memory:
                self.from_memory.discard(entry["id"])  # delivered (or pending) from memory already
                skipped.append(off)
                continue
            if off in self.state.done:
                skipped.append(off)
                continue
            if entry is None:
                log.error("outbox entry at %d is not a notification; %s skips it", off, self.target.id)
                skipped.append(off)
                continue
            try:
                people = [Person.from_json(p) for p in entry.get("to") or []]
                message = Message.from_json(entry["message"])
            except Exception as exc:  # a poison line must not block the target: skipped, said
                log.error("outbox entry at %d is malformed (%s); %s skips it", off, exc, self.target.id)
                skipped.append(off)
                continue
            if not self.channel.wants(str(entry.get("event")), entry.get("community"), entry.get("severity"), people):
                skipped.append(off)
                continue
            pend = Pending(off, entry, message, people)
            if time.time() - float(entry.get("at") or 0) >= self.policy.give_up_s:
                # Older than the give-up time before it was ever tried (a target added back after a long
                # absence): recorded, not sent late.
                self.given_up += 1
                self._note(pend, False, "expired before it could be sent", attempt=0, gave_up=True)
                skipped.append(off)
                continue
            self.pending[off] = pend
        self.read_pos = self.outbox.consumed
        if skipped:
            self._finish(skipped)

    def _read_held(self) -> None:
        """Lines the disk could not take: taken up from memory, under negative offsets."""
        for seq, entry in self.outbox.held_after(self.held_seen):
            self.held_seen = seq
            self.from_memory.add(str(entry.get("id")))
            people = [Person.from_json(p) for p in entry.get("to") or []]
            if self.channel.wants(str(entry.get("event")), entry.get("community"), entry.get("severity"), people):
                self.pending[-seq] = Pending(-seq, entry, Message.from_json(entry["message"]), people)

    # -- rate ----------------------------------------------------------------------------------
    def _budget(self, now: float) -> tuple[int, float]:
        """(messages allowed now, when the next slot frees)."""
        rate = self.channel.rate()
        if rate is None:
            return 1 << 30, now
        count, window = rate
        self.state.sent = [t for t in self.state.sent if t > now - window]
        left = count - len(self.state.sent)
        free_at = self.state.sent[0] + window if self.state.sent else now
        return left, (now if left > 0 else free_at)

    def _window(self) -> float:
        rate = self.channel.rate()
        return rate[1] if rate else 0.0

    def _cost(self, people: list[Person]) -> int:
        per = getattr(self.channel, "messages_per_send", None)
        return int(per(people)) if per else 1

    # -- sending -------------------------------------------------------------------------------
    def _note(self, p: Pending, delivered: bool, error: str | None, **extra: Any) -> None:
        alert_id = p.entry.get("alert_id")
        if not alert_id or self.record is None:
            return
        names = [x.name for x in self.channel.addressees(p.people)] or [None]
        for name in names:
            data = {"person": name, "channel": self.target.id, "kind": self.target.kind, "delivered": delivered,
                    "error": error, "event": p.entry.get("event"), "notification": p.entry.get("id"), **extra}
            try:
                self.record(str(alert_id), "notified", data)
            except Exception:  # the timeline is a record; a busy database must not stop delivery
                log.exception("could not record the notification of %s", alert_id)

    @staticmethod
    def _people(batch: list[Pending]) -> list[Person]:
        seen: dict[str, Person] = {}
        for p in batch:
            for person in p.people:
                seen.setdefault(person.pid or person.name, person)
        return list(seen.values())

    def _fitting(self, due: list[Pending]) -> list[Pending]:
        """The oldest due notifications whose digest fits the channel's message size: the rest wait
        for the next digest rather than being cut off the end of this one."""
        take = due[:MAX_DIGEST]
        while len(take) > 1:
            size = len(digest([p.message for p in take], self.public_url).markdown().encode())
            if size <= self.channel.max_bytes - 200:  # room for the @-mentions the channel may add
                break
            take = take[: max(1, len(take) * 3 // 4)]
        return take

    def _attempt(self, batch: list[Pending], now: float) -> None:
        if len(batch) == 1:
            p = batch[0]
            message, people = p.message, p.people
        else:
            message = digest([p.message for p in batch], self.public_url)
            people = self._people(batch)
        alert = batch[0].entry.get("alert") if len(batch) == 1 else None
        try:
            try:
                remark = self.channel.send(message, people, alert=alert)
            finally:
                # Counted when the far end has answered: its clock started no later than that.
                self.state.sent.extend([time.time()] * self._cost(people))
        except DeliveryError as exc:
            self._failed(batch, exc.text, (exc.retry_after or self.channel.blocked_s()) if exc.rate_limited else None)
            return
        except Exception as exc:  # a channel bug must not end the thread: a failure like any other
            log.exception("channel %s failed unexpectedly", self.target.id)
            self._failed(batch, f"{type(exc).__name__}: {exc}", None)
            return
        self.last_error = None
        self.delivered += len(batch)
        if len(batch) > 1:
            self.digests += 1
        self._finish([p.offset for p in batch])
        for p in batch:
            self._note(p, True, remark, attempt=p.attempts + 1, digest=len(batch) > 1)

    def _failed(self, batch: list[Pending], error: str, retry_after: float | None) -> None:
        now = time.time()
        self.last_error = error
        if retry_after is not None:  # the far end said "too fast": it blocks us a while
            self.state.blocked_until = now + retry_after
        gone: list[int] = []
        for p in batch:
            p.attempts += 1
            self.failed_attempts += 1
            age = now - float(p.entry.get("at", now))
            if age >= self.policy.give_up_s:
                gone.append(p.offset)
                self.given_up += 1
                log.error("%s: gave up on notification %s after %d attempts: %s", self.target.id,
                          p.entry.get("id"), p.attempts, error)
                self._note(p, False, error, attempt=p.attempts, gave_up=True)
                continue
            delay = self.policy.delay(p.attempts)
            p.next_at = now + delay
            log.warning("%s: notification %s not delivered (attempt %d, next in %.1f s): %s", self.target.id,
                        p.entry.get("id"), p.attempts, delay, error)
            self._note(p, False, error, attempt=p.attempts, retry_in_s=round(delay, 1))
        if gone:
            self._finish(gone)
        else:
            self._save()

    def step(self) -> float:
        """One round: read, send what is due within the rate; returns how long to wait."""
        self.outbox.retry()
        self._read_new()
        now = time.time()
        if not self.pending:
            return POLL_S
        if now < self.state.blocked_until:
            return min(self.state.blocked_until - now, POLL_S * 5)
        due = sorted((p for p in self.pending.values() if p.next_at <= now), key=lambda p: p.offset)
        if not due:
            return max(0.01, min(POLL_S, min(p.next_at for p in self.pending.values()) - now))
        if not self.outbox.still_mine(self.target.id):  # taken over meanwhile: the new owner sends these
            self._superseded()
            return 0.0
        left, free_at = self._budget(now)
        if left <= 0:
            return max(0.01, min(POLL_S * 5, free_at - now))
        need = sum(self._cost(p.people) for p in due)
        if need > left:
            # Past the limit: one digest of what is due (as much as fits), once it has the slots it needs.
            batch = self._fitting(due)
            cost = self._cost(self._people(batch))
            if cost > left:
                k = cost - left
                return max(0.01, min(POLL_S * 5, self.state.sent[k - 1] + self._window() - now))
            self._attempt(batch, now)
            return 0.0
        for p in due:
            if self.stop_event.is_set():
                break
            self._attempt([p], time.time())
        return 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                with self.lock:
                    wait = self.step()
            except Exception:  # never let one bad line or disk hiccup end this target's delivery
                log.exception("delivery loop of %s", self.target.id)
                wait = 1.0
            if wait > 0 and not self.stop_event.is_set():
                gen = self.outbox.generation
                size = self.outbox.size()  # outside the lock: it may be a query, and appends take the lock
                with self.outbox.changed:
                    if (size == self._seen_size and self.outbox.generation == gen
                            and self.outbox.held_seq == self.held_seen):  # nothing new: sleep
                        self.outbox.changed.wait(wait)
                    self._seen_size = size

    def stop(self) -> None:
        self.stop_event.set()
        with self.outbox.changed:
            self.outbox.changed.notify_all()

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.target.kind, "pending": len(self.pending), "delivered": self.delivered,
                "failed_attempts": self.failed_attempts, "given_up": self.given_up, "digests": self.digests,
                "last_error": self.last_error}


Step = tuple[str, str, str, dict[str, Any]]  # (alert_id, event, at ISO, data)
RecordMany = Callable[[list[Step]], None]


class Recorder(threading.Thread):
    """Writes the delivery threads' timeline steps in batches (one transaction each), off their path."""

    def __init__(self, write: RecordMany) -> None:
        super().__init__(name="notify-recorder", daemon=True)
        self.write = write
        self.q: queue.Queue[Step | None] = queue.Queue()

    def __call__(self, alert_id: str, event: str, data: dict[str, Any]) -> None:
        self.q.put((alert_id, event, iso_ms(int(time.time() * 1000)), data))

    def run(self) -> None:
        done = False
        while not done:
            batch = [self.q.get()]
            while len(batch) < 500:
                try:
                    batch.append(self.q.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            steps = [b for b in batch if b is not None]
            try:
                self.write(steps)
            except Exception:
                log.exception("could not record %d notification steps", len(steps))

    def close(self, join_s: float = 5.0) -> None:
        self.q.put(None)
        if self.is_alive():
            self.join(join_s)


class Delivery:
    """All targets' workers over one outbox."""

    def __init__(self, data_dir: Path, targets: list[Target], *, record: Record | None = None,
                 record_many: RecordMany | None = None,
                 policy: RetryPolicy | None = None, timeout_s: float = 5.0, public_url: str | None = None,
                 outbox: BaseOutbox | None = None) -> None:
        # The data folder's file, unless given another (the store's table: `open_outbox`).
        self.outbox: BaseOutbox = outbox or Outbox(outbox_path(data_dir), cursor_dir(data_dir))
        self.cursors = cursor_dir(data_dir)
        self.recorder: Recorder | None = None
        if record_many is None and record is not None:
            one = record

            def record_many(steps: list[Step]) -> None:
                for alert_id, event, _at, data in steps:
                    one(alert_id, event, data)

        if record_many is not None:
            self.recorder = Recorder(record_many)
            self.recorder.start()
        self.record = self.recorder
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self.public_url = public_url
        self.workers: dict[str, TargetWorker] = {}
        self.retired: list[TargetWorker] = []  # stopped by a reconfiguration, perhaps still finishing a send
        self._lock_fd: int | None = None
        self._said_passive = False
        self.configure(targets)

    def configure(self, targets: list[Target]) -> None:
        """Start workers for new or changed targets, stop those no longer configured."""
        wanted = {t.id: t for t in targets}
        for tid in list(self.workers):
            if tid not in wanted or self.workers[tid].target != wanted[tid]:
                w = self.workers.pop(tid)
                w.stop()
                self.retired.append(w)
                with contextlib.suppress(Exception):
                    w.channel.close()
        for tid, t in wanted.items():
            if tid not in self.workers:
                self.workers[tid] = TargetWorker(make_channel(t, self.timeout_s), self.outbox, self.record,
                                                 self.policy, self.public_url)

    def _own(self) -> bool:
        """One process delivers from an outbox (others only append): an flock on the cursors' folder.
        The table's cursors are claimed one by one instead, by whoever starts delivering (`TableOutbox`)."""
        if self._lock_fd is not None or not isinstance(self.outbox, Outbox):
            return True
        self.cursors.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.cursors / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not self._said_passive:
                log.error("another process is delivering from %s: this one only appends to it (and takes over "
                          "when that one ends)", self.outbox.name)
                self._said_passive = True
            return False
        self._lock_fd = fd
        return True

    def start(self) -> None:
        """Start the workers (again callable: picks up new targets, takes over from a process that ended)."""
        if not self._own():
            return
        for w in self.workers.values():
            if not w.is_alive() and not w.stop_event.is_set():
                try:
                    w.reload()  # the cursor as the last owner left it (another process, or an earlier run)
                except Exception as exc:
                    if not self.outbox.holdable(exc):
                        raise
                    log.warning("%s: cursor not read (%s): starts when the database answers", w.target.id, exc)
                    continue
                w.start()

    def stop(self, join_s: float = 2.0) -> None:
        for w in self.workers.values():
            w.stop()
        for w in self.workers.values():
            if w.is_alive():
                w.join(join_s)
        if self.recorder is not None:
            self.recorder.close()
        self.outbox.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def snapshot(self) -> dict[str, Any]:
        return {tid: w.snapshot() for tid, w in self.workers.items()}

    def compact(self, min_bytes: int = COMPACT_BYTES) -> bool:
        """When every target has finished every line and the outbox is past `min_bytes`, start a new
        one: the old is kept as `outbox.jsonl.1` (replacing the previous), the cursors restart at 0.
        Cursors of targets no longer configured are removed (added back, a target starts afresh).
        The table drops what every target has finished, a day after it was written."""
        if not isinstance(self.outbox, Outbox):  # the store's table (alerts/store/outbox.py)
            return self._compact_table()
        path = self.outbox.path
        size = self.outbox.size()
        if size < min_bytes:
            return False
        self.retired = [w for w in self.retired if w.is_alive()]
        if self.retired:  # one may still write its cursor: wait for it to end
            return False
        workers = list(self.workers.values())
        held: list[threading.Lock] = []
        try:
            for w in workers:
                if not w.lock.acquire(timeout=1.0):
                    return False
                held.append(w.lock)
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if any(w.pending or w.read_pos != size or w.state.offset != size for w in workers):
                    return False
                os.replace(path, path.with_name(path.name + ".1"))
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            finally:
                os.close(fd)  # releases the lock: appenders waiting on the old file see it moved and reopen
            for w in workers:
                w.state.offset, w.state.done, w.read_pos, w.order, w._seen_size = 0, set(), 0, [], -1
                w._save()
            self.outbox.drop_cursors({w.target.id for w in workers})
            log.info("outbox compacted: %d bytes delivered everywhere moved to %s.1", size, path.name)
            return True
        finally:
            for lock in held:
                lock.release()

    def _compact_table(self) -> bool:
        box: Any = self.outbox  # alerts/store/outbox.py TableOutbox
        workers = list(self.workers.values())
        if any(w.stop_event.is_set() for w in workers) or any(w.is_alive() for w in self.retired):
            return False  # taken over (the new owner compacts), or a retired worker may still write
        try:
            box.drop_cursors({w.target.id for w in workers})
            n = box.compact()
        except Exception as exc:
            if not box.holdable(exc):
                raise
            return False
        if n:
            log.info("outbox: %d entries delivered everywhere a day ago or more deleted", n)
        return n > 0


_SHARED: dict[str, BaseOutbox] = {}  # the running alert service's outbox, for messages queued in it


def _new_outbox(settings: Any, part: str) -> BaseOutbox:
    """The store's table when the store is PostgreSQL, else the data folder's file."""
    from alerts.store import sqlite_file

    if sqlite_file(settings) is None:
        from alerts.store.outbox import TableOutbox

        return TableOutbox(str(settings.store_url), part)
    return Outbox(outbox_path(settings.data_path), cursor_dir(settings.data_path))


def open_outbox(settings: Any, part: str) -> BaseOutbox:
    """The outbox of an alert partition (`part`, its lease's name): the store's table when the store is
    PostgreSQL (engines on several hosts continue each other's delivery), else the data folder's file.
    It is also the outbox of the messages this process queues (`outbox_for`)."""
    box = _new_outbox(settings, part)
    _SHARED[str(settings.data_path)] = box
    return box


def outbox_for(settings: Any) -> BaseOutbox:
    """Where a message queued in this process goes: the outbox of the alert service running here, else
    that of the whole street's partition."""
    box = _SHARED.get(str(settings.data_path))
    if box is not None:
        return box
    box = _new_outbox(settings, "alerts")
    if isinstance(box, Outbox):  # a file is opened per use
        return box
    return _SHARED.setdefault(str(settings.data_path), box)  # kept: one connection for this process's messages
