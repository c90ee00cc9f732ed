"""`devices commissioning`: what a street checks before it accepts an installer's work (设备验收).

Per community and compound: the devices registered, those that reported in the last 24 hours, those
that never reported, when the compound was last heard, and which devices last said `offline` or sent
`low_battery`. Everything comes from the registry and from InfluxDB's last points (telemetry, status
and event measurements), so it holds whether or not the alert engine ran.

Battery and signal: the contract's devices report no battery level nor signal strength as metrics
(an unknown metric is dead-lettered), only the `low_battery` event and their online/offline status;
those are what is shown. A device's last telemetry values are in the per-device list.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contract import COMMUNITIES, KIND_LEDGER_NAMES, KINDS, Device
from core.influx import InfluxClient, quote_ident, quote_str
from core.lineprotocol import EVENT_MEASUREMENT, STATUS_MEASUREMENT
from core.timebase import beijing, iso_ms

RECENT_S = 24 * 3600
LOW_BATTERY = "low_battery"


@dataclass
class DeviceCheck:
    device: Device
    last_seen_ms: int | None = None
    status: str | None = None  # last online/offline
    status_ms: int | None = None
    low_battery_ms: int | None = None
    last_values: dict[str, Any] = field(default_factory=dict)

    def seen(self, ms: int | None) -> None:
        if ms is not None and (self.last_seen_ms is None or ms > self.last_seen_ms):
            self.last_seen_ms = ms

    def recent(self, now_ms: int) -> bool:
        return self.last_seen_ms is not None and now_ms - self.last_seen_ms <= RECENT_S * 1000

    def as_json(self, now_ms: int) -> dict[str, Any]:
        d = self.device
        return {
            "device_id": d.device_id, "kind": d.kind, "community": d.community, "compound_id": d.compound_id,
            "last_seen": _iso(self.last_seen_ms), "reported_24h": self.recent(now_ms),
            "never_reported": self.last_seen_ms is None, "status": self.status, "status_at": _iso(self.status_ms),
            "low_battery_at": _iso(self.low_battery_ms), "last_values": self.last_values,
        }


@dataclass
class CompoundCheck:
    community: str
    compound_id: str
    name: str
    devices: list[DeviceCheck] = field(default_factory=list)

    def summary(self, now_ms: int) -> dict[str, Any]:
        seen = [c.last_seen_ms for c in self.devices if c.last_seen_ms is not None]
        return {
            "community": self.community, "compound_id": self.compound_id, "name": self.name,
            "registered": len(self.devices),
            "reported_24h": sum(c.recent(now_ms) for c in self.devices),
            "never_reported": sum(c.last_seen_ms is None for c in self.devices),
            "last_seen": _iso(max(seen)) if seen else None,
            "offline": sum(c.status == "offline" for c in self.devices),
            "low_battery": sum(c.low_battery_ms is not None for c in self.devices),
        }


def _iso(ms: int | None) -> str | None:
    return iso_ms(ms) if ms is not None else None


def _queries() -> list[str]:
    """The last point of every device in each measurement (GROUP BY device_id, newest first, LIMIT 1)."""
    last = " GROUP BY \"device_id\" ORDER BY time DESC LIMIT 1"
    out = [f"SELECT * FROM {quote_ident(k)}{last}" for k in KINDS]
    out.append(f"SELECT * FROM {quote_ident(STATUS_MEASUREMENT)}{last}")
    out.append(f"SELECT * FROM {quote_ident(EVENT_MEASUREMENT)}{last}")
    out.append(f"SELECT * FROM {quote_ident(EVENT_MEASUREMENT)} WHERE \"event\" = {quote_str(LOW_BATTERY)}{last}")
    return out


_TAGS = frozenset({"time", "device_id", "community", "kind", "compound_id", "event"})


def check(devices: Iterable[Device], influx: InfluxClient | None, names: dict[str, str] | None = None
          ) -> list[CompoundCheck]:
    """Every registered device with what InfluxDB last heard of it, grouped by community and compound
    (`influx` None: its database does not exist yet, nothing was ever stored)."""
    checks = {d.device_id: DeviceCheck(d) for d in devices}
    for i, q in enumerate(_queries() if influx is not None else []):
        for series in influx.query(q):
            did = series.tags.get("device_id")
            c = checks.get(did) if did else None
            if c is None:
                continue  # not registered (any more): not this street's acceptance
            for row in series.rows():
                ms = int(row["time"])
                if i < len(KINDS):
                    c.seen(ms)
                    c.last_values = {k: v for k, v in row.items() if k not in _TAGS and v is not None}
                elif i == len(KINDS):
                    c.seen(ms)
                    c.status, c.status_ms = row.get("state"), ms
                elif i == len(KINDS) + 1:
                    c.seen(ms)
                else:
                    c.low_battery_ms = ms
    groups: dict[tuple[str, str], CompoundCheck] = {}
    for c in checks.values():
        d = c.device
        key = (d.community, d.compound_id)
        if key not in groups:
            groups[key] = CompoundCheck(d.community, d.compound_id, (names or {}).get(d.compound_id, ""))
        groups[key].devices.append(c)
    order = list(COMMUNITIES)
    out = sorted(groups.values(), key=lambda g: (order.index(g.community) if g.community in order else 99,
                                                 g.compound_id))
    for g in out:
        g.devices.sort(key=lambda c: c.device.device_id)
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


def _local(ms: int | None) -> str:
    return beijing(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms is not None else ""


def text_report(groups: list[CompoundCheck], now: int) -> str:
    lines = [f"设备验收 / commissioning at {_local(now)} (Beijing time); reported = heard in the last 24 h"]
    head = (f"  {'compound':<12} {'registered':>10} {'reported':>9} {'never':>6} {'offline':>8} {'low batt':>9}"
            "  last seen")
    community = None
    for g in groups:
        if g.community != community:
            community = g.community
            lines += ["", f"{COMMUNITIES.get(community, community)} ({community})", head]
        s = g.summary(now)
        last = _local(max((c.last_seen_ms for c in g.devices if c.last_seen_ms is not None), default=None))
        lines.append(f"  {g.compound_id:<12} {s['registered']:>10} {s['reported_24h']:>9} {s['never_reported']:>6} "
                     f"{s['offline']:>8} {s['low_battery']:>9}  {last or '-'}  {g.name}")
        never = [c.device.device_id for c in g.devices if c.last_seen_ms is None]
        if never:
            lines.append(f"    never reported: {', '.join(never)}")
    total = sum(len(g.devices) for g in groups)
    recent = sum(c.recent(now) for g in groups for c in g.devices)
    never = sum(c.last_seen_ms is None for g in groups for c in g.devices)
    lines += ["", f"{total} devices registered, {recent} reported in the last 24 h, {never} never reported"]
    return "\n".join(lines)


def write_xlsx(path: Path, groups: list[CompoundCheck], now: int) -> None:
    """Two sheets: 验收汇总 (a row per compound) and 设备明细 (a row per device)."""
    import io

    from openpyxl import Workbook
    from openpyxl.styles import Font

    from core.secrets import write_private

    wb = Workbook()
    ws = wb.active
    ws.title = "验收汇总"
    ws.append(["所属社区", "小区编号", "小区名称", "登记设备", "24小时内上报", "从未上报", "离线", "低电量",
               "最后上报(北京时间)"])
    for g in groups:
        s = g.summary(now)
        last = max((c.last_seen_ms for c in g.devices if c.last_seen_ms is not None), default=None)
        ws.append([COMMUNITIES.get(g.community, g.community), g.compound_id, g.name, s["registered"],
                   s["reported_24h"], s["never_reported"], s["offline"], s["low_battery"], _local(last)])
    dev = wb.create_sheet("设备明细")
    dev.append(["设备编号", "设备类型", "所属社区", "小区编号", "24小时内上报", "最后上报(北京时间)", "状态",
                "状态时间(北京时间)", "低电量告警(北京时间)", "最后读数"])
    for g in groups:
        for c in g.devices:
            d = c.device
            values = ", ".join(f"{k}={v}" for k, v in sorted(c.last_values.items()))
            dev.append([d.device_id, KIND_LEDGER_NAMES.get(d.kind, d.kind), COMMUNITIES.get(d.community, d.community),
                        d.compound_id, "是" if c.recent(now) else ("从未" if c.last_seen_ms is None else "否"),
                        _local(c.last_seen_ms), c.status or "", _local(c.status_ms), _local(c.low_battery_ms), values])
    for sheet in (ws, dev):
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    write_private(Path(path), buf.getvalue())
