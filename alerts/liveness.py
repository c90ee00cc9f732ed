"""Who is talking: the last time each registered device was heard, as arrays, so the silence scan
over 100,000 devices and the per-place counts are a few vectorised passes, not a Python loop.

- `last[i]`: wall time of the last message (NaN: not heard); `ever[i]`: sent anything, an offline
  status included (a device that never did is "not yet reporting", not silent).
- `offline[i]`: the last status was `offline` (often the broker's last will).
- A device is *down* for the place test when it is offline or overdue (silent ≥ `overdue_factor`
  × its interval): a compound's devices miss their reports within seconds of a network cut, well
  before each one's own silence limit, so the place alert forms before any device alert is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.contract import Device

OVERDUE_FACTOR = 1.5  # a device that missed 1.5 reports counts as down for the place test
LIMIT_FACTOR = 3.0  # silent this many intervals: past its limit (the absence rules' `silent_factor` wins)
NO_PLACE = 1 << 30  # min_devices no place reaches
F = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
I = npt.NDArray[np.int64]  # noqa: E741


@dataclass(slots=True)
class Scan:
    now: float
    silent_s: F  # seconds since last heard (or since our feed came back), NaN never heard
    never: B
    down: B  # offline or overdue (for place tests)
    compound_down: B  # per compound index
    compound_counts: tuple[I, I]  # (down, total of devices that ever reported) per compound
    community_down: B
    community_counts: tuple[I, I]
    never_by_community: tuple[I, I]  # (never heard and past their limit, all) per community


class Liveness:
    def __init__(self, registry: Mapping[str, Device], seen: Mapping[str, float] | None = None) -> None:
        self.registry = registry
        devs = list(registry.values())
        self.devices = devs
        self.index = {d.device_id: i for i, d in enumerate(devs)}
        self.compounds = sorted({d.compound_id for d in devs})
        self.communities = sorted({d.community for d in devs})
        cidx = {c: i for i, c in enumerate(self.compounds)}
        midx = {c: i for i, c in enumerate(self.communities)}
        n = len(devs)
        self.interval = np.array([d.interval_s for d in devs], dtype=np.float64)
        self.compound_of = np.array([cidx[d.compound_id] for d in devs], dtype=np.int64)
        self.community_of = np.array([midx[d.community] for d in devs], dtype=np.int64)
        self.compound_community = np.zeros(len(self.compounds), dtype=np.int64)
        self.compound_community[self.compound_of] = self.community_of
        self.last = np.full(n, np.nan)
        self.offline = np.zeros(n, dtype=np.bool_)
        self._kind_masks: dict[str, B] = {}
        self.ever = np.zeros(n, dtype=np.bool_)  # sent anything at all (an offline status counts)
        for dev_id, t in (seen or {}).items():
            i = self.index.get(dev_id)
            if i is not None:
                self.last[i] = t
                self.ever[i] = True

    def kind_mask(self, kind: str) -> B:
        m = self._kind_masks.get(kind)
        if m is None:
            m = self._kind_masks[kind] = np.array([d.kind == kind for d in self.devices], dtype=np.bool_)
        return m

    def heard(self, device_id: str, now: float) -> None:
        i = self.index.get(device_id)
        if i is not None:
            self.last[i] = now
            self.offline[i] = False
            self.ever[i] = True

    def heard_many(self, heard: Mapping[str, float]) -> None:
        """Apply many last-heard times at once (the engine batches them between scans)."""
        pairs = [(self.index[d], t) for d, t in heard.items() if d in self.index]
        idx = [i for i, _ in pairs]
        vals = [t for _, t in pairs]
        ii = np.fromiter(idx, dtype=np.int64, count=len(idx))
        self.last[ii] = np.fromiter(vals, dtype=np.float64, count=len(vals))
        self.offline[ii] = False
        self.ever[ii] = True

    def went_offline(self, device_id: str) -> None:
        i = self.index.get(device_id)
        if i is not None:
            self.offline[i] = True
            self.ever[i] = True

    def scan(self, now: float, feed_since: float, limit_factor: float = LIMIT_FACTOR,
             overdue_factor: float = OVERDUE_FACTOR, share: float = 2.0, min_devices: int = NO_PLACE,
             community_share: float = 2.0, community_min: int = NO_PLACE) -> Scan:
        """Who is silent and down now. Without place thresholds (no place rule), no place is down;
        `limit_factor` x interval: when a device never heard counts as not reporting."""
        never = ~self.ever
        since = np.maximum(np.nan_to_num(self.last, nan=feed_since), feed_since)
        silent_s = now - since
        heard = ~never
        down = heard & (self.offline | (silent_s >= overdue_factor * self.interval))
        nc = len(self.compounds)
        c_tot = np.bincount(self.compound_of[heard], minlength=nc)
        c_dn = np.bincount(self.compound_of[down], minlength=nc)
        c_down = (c_tot >= min_devices) & (c_dn >= share * c_tot) & (c_dn > 0)
        nm = len(self.communities)
        m_tot = np.bincount(self.community_of[heard], minlength=nm)
        m_dn = np.bincount(self.community_of[down], minlength=nm)
        m_down = (m_tot >= community_min) & (m_dn >= community_share * m_tot) & (m_dn > 0)
        never_due = never & (silent_s >= limit_factor * self.interval)
        nv = np.bincount(self.community_of[never_due], minlength=nm)
        allm = np.bincount(self.community_of, minlength=nm)
        return Scan(now, np.where(never, np.nan, silent_s), never, down, c_down, (c_dn, c_tot), m_down,
                    (m_dn, m_tot), (nv, allm))
