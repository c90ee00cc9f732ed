"""Counters and gauges of one ingest process, as written to its heartbeat (`SC_DATA_DIR/run/ingest-N.json`).

Snapshot keys (the dashboard's /metrics and /api/health read them):
`counters` {received, stored, deadlettered, spooled, replayed, influx_refused, acks_skipped_reconnect},
`deadlettered_by_reason`, `lag_ms` (newest batch: now − oldest payload ts), `lag_avg_ms`,
`spooled`, `replayed` (also top-level, for convenience), `clock_skew_ms` / `clock_skew_n` (mean of
arrival − device `ts` over the last readings: the host clock against the devices', ClockSkew).
"""

from __future__ import annotations

import threading
from collections import Counter, deque

from ingest.deadletter import DeadLetter


class ClockSkew:
    """Running mean of (arrival − device timestamp) over the last `size` readings, in ms. Updated by
    the network thread alone (under ingest's batch lock); read by the heartbeat (a float: no lock)."""

    def __init__(self, size: int = 1000) -> None:
        self._window: deque[int] = deque(maxlen=size)
        self._sum = 0

    def add(self, skew_ms: int) -> None:
        w = self._window
        if len(w) == w.maxlen:
            self._sum -= w[0]
        w.append(skew_ms)
        self._sum += skew_ms

    def snapshot(self) -> dict[str, object]:
        n = len(self._window)
        return {"clock_skew_ms": round(self._sum / n, 1) if n else None, "clock_skew_n": n}


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0  # bumped by the network thread alone, under the batch lock
        self._counters: Counter[str] = Counter()
        self.dead_by_reason: Counter[str] = Counter()
        self.lag_ms = 0
        self.lag_avg_ms = 0

    @property
    def counters(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counters)
        out["received"] = self.received
        for k in ("stored", "deadlettered", "spooled", "replayed"):
            out.setdefault(k, 0)
        return out

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self._counters[name] += n

    def _dead(self, dead: list[DeadLetter]) -> None:
        self._counters["deadlettered"] += len(dead)
        for d in dead:
            self.dead_by_reason[d.reason] += 1

    def batch_done(self, points: int, spooled: bool, dead: list[DeadLetter], refused: int,
                   lag: tuple[int, int] | None) -> None:
        with self._lock:
            self._counters["spooled" if spooled else "stored"] += points
            self._counters["influx_refused"] += refused
            self._dead(dead)
            if lag is not None:
                self.lag_ms, self.lag_avg_ms = lag

    def replayed_done(self, points: int, dead: list[DeadLetter]) -> None:
        with self._lock:
            self._counters["replayed"] += points
            self._counters["influx_refused"] += len(dead)
            self._dead(dead)

    def snapshot(self) -> dict[str, object]:
        counters = self.counters
        with self._lock:
            return {
                "counters": counters,
                "deadlettered_by_reason": dict(self.dead_by_reason),
                "lag_ms": self.lag_ms,
                "lag_avg_ms": self.lag_avg_ms,
                "spooled": counters["spooled"],
                "replayed": counters["replayed"],
            }
