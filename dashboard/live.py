"""The live picture at one moment: open alerts joined with the map's compounds and devices.

Everything the refresh callback sends is derived here once per tick, with a signature so that an
unchanged picture costs the browser nothing (no Patch, no list re-render).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.rules import title_of
from core.contract import Alert, AlertState, Device
from core.severity import SEVERITIES, rank, rollup
from dashboard.geo import BaseLayers

OPEN_STATES = f"{AlertState.ACTIVE},{AlertState.ACKNOWLEDGED}"
OFFLINE_CODE = 5  # device colour code of a device that is offline or silent (codes 1..4: alert severity)
SILENT_RULES = frozenset({"device_silent", "camera_offline"})  # alerts that mean "no data from it"
LOUD = 3  # orange and red alerts keep their colour on an offline device


def order_alerts(alerts: list[Alert]) -> list[Alert]:
    """Worst first; among equals, not yet acknowledged first; then newest first."""
    # Two stable sorts: newest first, then by (severity, state) so ties keep the newest on top.
    newest = sorted(alerts, key=lambda a: a.started_at or "", reverse=True)
    return sorted(newest, key=lambda a: (-rank(a.severity), 0 if a.state == AlertState.ACTIVE else 1))


@dataclass(frozen=True)
class Halo:
    alert_id: str
    severity: str
    state: str
    lon: float
    lat: float
    text: str


@dataclass(frozen=True)
class Live:
    alerts: list[Alert]  # open alerts, worst/newest first
    compound_codes: list[int]  # risk 0..4 per BaseLayers.compound_ids
    halos: list[Halo]
    signature: str  # changes whenever anything drawn from alerts changes
    registry_version: str
    resolved: list[Alert] = field(default_factory=list)  # resolved in the last minutes, newest first
    resolved_halos: list[Halo] = field(default_factory=list)
    device_sparse: dict[str, int] = field(default_factory=dict)  # device_id -> code, non-zero only
    offline_ids: frozenset[str] = frozenset()  # offline or silent devices
    version: int = 0

    def code_of(self, device_id: str) -> int:
        """0 reporting without alert, 1..4 its worst alert (blue..red), OFFLINE_CODE offline or silent."""
        return self.device_sparse.get(device_id, 0)


def alert_point(a: Alert, base: BaseLayers, devices: Mapping[str, Device]) -> tuple[float, float] | None:
    """Where to draw an alert: its own lon/lat, else its device, compound or community."""
    if a.lon is not None and a.lat is not None:
        return float(a.lon), float(a.lat)
    dev = devices.get(a.device_id) if a.device_id else None
    if dev is not None:
        return dev.lon, dev.lat
    place = base.places.get(a.compound_id or "")
    if place is not None:
        return place.lon, place.lat
    return base.community_centres.get(a.community)


def compute_live(alerts: list[Alert], base: BaseLayers, devices: Mapping[str, Device], registry_version: str,
                 offline: frozenset[str] = frozenset(), resolved: list[Alert] | None = None,
                 version: int = 0) -> Live:
    ordered = order_alerts(alerts)
    compound_pairs: list[tuple[str, str]] = []
    device_pairs: list[tuple[str, str]] = []
    halos: list[Halo] = []
    for a in ordered:
        cid = a.compound_id or ""
        # A unit or shop inside a compound colours that compound too.
        dev = devices.get(a.device_id) if a.device_id else None
        keys = {cid, dev.compound_id if dev else ""} - {""}
        keys |= {base.places[k].compound_id for k in list(keys) if k in base.places}
        compound_pairs += [(key, a.severity) for key in keys - {""}]
        if a.device_id:
            device_pairs.append((a.device_id, a.severity))
        pt = alert_point(a, base, devices)
        if pt is not None:
            halos.append(Halo(a.alert_id, a.severity, a.state, pt[0], pt[1], a.message or title_of(a.rule)))
    compound_worst = rollup(compound_pairs)
    device_worst = rollup(device_pairs)
    silent = {a.device_id for a in ordered if a.rule in SILENT_RULES and a.device_id}
    dark = (set(offline) | silent) & devices.keys()
    sparse = {d: rank(s) for d, s in device_worst.items() if d in devices}
    for d in dark:  # an offline device shows as such, unless it carries a loud alert
        if sparse.get(d, 0) < LOUD:
            sparse[d] = OFFLINE_CODE
    gone = sorted(resolved or [], key=lambda a: a.resolved_at or a.updated_at or "", reverse=True)
    faded: list[Halo] = []
    for a in gone:
        pt = alert_point(a, base, devices)
        if pt is not None:
            faded.append(Halo(a.alert_id, a.severity, a.state, pt[0], pt[1], a.message or title_of(a.rule)))
    h = hashlib.blake2b(digest_size=12)
    for a in ordered + gone:
        h.update(f"{a.alert_id}|{a.state}|{a.severity}|{a.updated_at}|{a.value}\n".encode())
    h.update(",".join(sorted(dark)).encode())
    h.update(registry_version.encode())
    return Live(
        alerts=ordered,
        compound_codes=[rank(compound_worst.get(c)) for c in base.compound_ids],
        halos=halos[::-1],  # plotly draws later points on top: the worst alert must be last
        signature=h.hexdigest(),
        registry_version=registry_version,
        resolved=gone,
        resolved_halos=faded,
        device_sparse=sparse,
        offline_ids=frozenset(dark),
        version=version,
    )


_PER_COMMUNITY: dict[str, dict[str, int]] = {}


def _devices_per_community(devices: Mapping[str, Device], registry_version: str) -> dict[str, int]:
    """Devices per community, counted once per registry version (100,000 devices take ~20 ms)."""
    got = _PER_COMMUNITY.get(registry_version)
    if got is None or registry_version in ("", "none"):
        got = {}
        for dev in devices.values():
            got[dev.community] = got.get(dev.community, 0) + 1
        _PER_COMMUNITY.clear()
        _PER_COMMUNITY[registry_version] = got
    return got


def counts_by_community(live: Live, devices: Mapping[str, Device]) -> dict[str, dict[str, Any]]:
    """Per community: open alerts by severity, by state, devices and devices in alert."""
    out: dict[str, dict[str, Any]] = {}

    def slot(c: str) -> dict[str, Any]:
        return out.setdefault(
            c,
            {
                **dict.fromkeys(SEVERITIES, 0),
                "active": 0,
                "acknowledged": 0,
                "devices": 0,
                "alerting": 0,
                "offline": 0,
            },
        )

    for a in live.alerts:
        s = slot(a.community)
        if a.severity in SEVERITIES:
            s[a.severity] += 1
        if a.state in ("active", "acknowledged"):
            s[a.state] += 1
    for c, n in _devices_per_community(devices, live.registry_version).items():
        slot(c)["devices"] += n
    for did, code in live.device_sparse.items():
        dev = devices.get(did)
        if dev is None:
            continue
        if code and code != OFFLINE_CODE:
            slot(dev.community)["alerting"] += 1
        if did in live.offline_ids:
            slot(dev.community)["offline"] += 1
    return out
