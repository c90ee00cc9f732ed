"""Flooding devices, from what ingest already counts: its per-device budget cuts (`rate_limited`).

Each ingest worker names, in its heartbeat, the devices it cut within the last minute and how many
of their messages (`rate_limited_devices`). Once a second the alert service reads those beats and
hands each `flood` rule's verdict per device to the engine: raised (one alert per device, the count
in its message, updated as it grows; `place_min` devices of one compound at once: one alert for the
compound instead), and cleared once no new cut was seen for the rule's `calm_s`; the engine's
hold-off then resolves it. Nothing is added to a message's path in ingest or here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from alerts.engine import Engine, Subject
from alerts.rules import Rule
from alerts.triggers import Verdict
from alerts.triggers import flood as flood_trigger
from core import heartbeat
from core.registry import Device


class FloodWatch:
    def __init__(self, engine: Engine, data_path: Path) -> None:
        self.engine = engine
        self.data_path = data_path
        self._counts: dict[tuple[str, str], int] = {}  # (worker, device) -> last count seen
        self._grew_at: dict[str, float] = {}  # device -> when its count last grew (monotonic)

    def counts(self) -> dict[str, int]:
        """Device -> messages cut within the last minute, over every live ingest worker."""
        out: dict[str, int] = {}
        now = time.monotonic()
        seen: dict[tuple[str, str], int] = {}
        for hb in heartbeat.read_all(self.data_path, "ingest"):
            if not hb.get("fresh") or hb.get("stopped"):
                continue
            for dev, n in (hb.get("rate_limited_devices") or {}).items():
                n = int(n)
                key = (str(hb.get("name")), str(dev))
                seen[key] = n
                if n != self._counts.get(key):  # grew (or a worker restarted): still being cut
                    self._grew_at[dev] = now
                out[dev] = out.get(dev, 0) + n
        self._counts = seen
        return out

    def check(self, registry: Mapping[str, Device]) -> None:
        rules = [r for r in self.engine.rules if r.trigger == flood_trigger.NAME]
        if not rules:
            return
        counts = self.counts()
        now_m, now = time.monotonic(), self.engine.clock()
        for rule in rules:
            flooding: dict[str, list[tuple[Device, int]]] = {}  # compound -> its flooding devices
            for dev_id, cut in counts.items():
                dev = registry.get(dev_id)
                if dev is None:
                    continue  # an unknown id is dead-lettered as such; nothing to point at on the map
                if flood_trigger.judge(rule, cut, now_m - self._grew_at.get(dev_id, now_m)) is Verdict.TRUE:
                    flooding.setdefault(dev.compound_id, []).append((dev, cut))
            raised: set[str] = set()  # subjects (devices, compounds) flooding now
            for compound, members in flooding.items():
                if compound and len(members) >= flood_trigger.place_min(rule):
                    self._fire_place(rule, compound, members, now)
                    raised.add(compound)
                    continue
                for dev, cut in members:
                    if (rule.name, compound) not in self.engine.open:  # its place's alert stands for it
                        self.engine.holds(rule, dev, cut, now, rule.render(value=cut))
                    raised.add(dev.device_id)
            for key in [k for k in self.engine.open if k[0] == rule.name and k[1] not in raised]:
                self.engine.clears(key, now)  # calm (or out of every worker's last minute)
        for dev_id in [d for d in self._grew_at if d not in counts]:
            del self._grew_at[dev_id]

    def _fire_place(self, rule: Rule, compound: str, members: list[tuple[Device, int]], now: float) -> None:
        """One alert for a compound whose devices flood together (a gateway, an installation)."""
        devs = [d for d, _ in members]
        total = sum(c for _, c in members)
        lons = [d.lon for d in devs if d.lon is not None]
        lats = [d.lat for d in devs if d.lat is not None]
        subj = Subject(compound, devs[0].community, compound, "", "",
                       sum(lons) / len(lons) if lons else None, sum(lats) / len(lats) if lats else None)
        message = f"{rule.render(value=total)} (本处 {len(devs)} 台设备同时)"
        self.engine.holds_for(rule, subj, total, now, message, rule.threshold, rule.severity)
