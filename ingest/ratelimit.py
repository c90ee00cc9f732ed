"""Per-device message budget: a babbling or flooding device is contained, never silently.

A token bucket per device (`SC_INGEST_DEVICE_RATE` messages/s, bursts of `SC_INGEST_DEVICE_BURST`).
Tokens come back with wall time, and also with the device's own timeline (the `ts` of its valid
messages), so a backlog that the broker kept during an outage, arriving all at once but spread
over time in its timestamps, passes; a device sending faster than the budget in its own time is
cut: it gets at most burst + rate × (wall time + the span of its own timestamps), and that span
is bounded by the contract's window (7 days back, 24 h ahead).

What a device sends beyond its budget is dead-lettered with reason `rate_limited` (a reason of the
project's own, beside the contract's), counted, and named in ingest's heartbeat
(`rate_limited_devices`: device → messages cut in the last minute) for the alert engine and the
dashboard. Other devices have their own buckets and are not slowed.
"""

from __future__ import annotations

import time

RATE_LIMITED = "rate_limited"  # project's own dead-letter reason (not in the contract's list)
RECENT_S = 60.0
MAX_BUCKETS = 200_000


class DeviceBudget:
    __slots__ = ("_buckets", "_recent", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        # device -> [tokens, last wall s, last ts ms]
        self._buckets: dict[str, list[float]] = {}
        self._recent: dict[str, list[float]] = {}  # device -> [cut count, last cut wall s]

    def allow(self, device: str, now_s: float, ts_ms: int | None = None) -> bool:
        if self.rate <= 0:
            return True
        b = self._buckets.get(device)
        if b is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now_s)
            self._buckets[device] = [self.burst - 1.0, now_s, float(ts_ms or 0)]
            return True
        elapsed = now_s - b[1]
        if ts_ms is not None and ts_ms > b[2]:
            if b[2]:
                elapsed = max(elapsed, (ts_ms - b[2]) / 1000.0)
            b[2] = float(ts_ms)
        b[1] = now_s
        tokens = min(self.burst, b[0] + elapsed * self.rate)
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return True
        b[0] = tokens
        r = self._recent.get(device)
        if r is None or now_s - r[1] > RECENT_S:
            self._recent[device] = [1.0, now_s]
        else:
            r[0] += 1
            r[1] = now_s
        return False

    def _prune(self, now_s: float) -> None:
        idle = [k for k, b in self._buckets.items() if now_s - b[1] > RECENT_S]
        for k in idle[: max(len(idle), len(self._buckets) // 2)]:
            del self._buckets[k]
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: forget the oldest half
            for k in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: MAX_BUCKETS // 2]:
                del self._buckets[k]

    def recent(self, now_s: float | None = None) -> dict[str, int]:
        """Devices cut within the last minute, and how many of their messages."""
        now_s = time.monotonic() if now_s is None else now_s
        items = list(self._recent.items())  # one C-level copy: the network thread adds meanwhile
        for k, r in items:
            if now_s - r[1] > RECENT_S:
                self._recent.pop(k, None)
        return {k: int(r[0]) for k, r in items if now_s - r[1] <= RECENT_S}


def device_of(topic: str) -> str | None:
    """The device id part of `sc/{community}/{kind}/{device_id}/...`, if the topic has one."""
    parts = topic.split("/", 4)
    return parts[3] if len(parts) >= 4 and parts[0] == "sc" else None
