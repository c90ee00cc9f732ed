"""The bridges' Prometheus metrics (they own every `sc_bridge_*` name): `add_bridges(families, snapshots)`.

`snapshots` are the bridges' heartbeat documents (`core.heartbeat.read_all(data_dir, "bridge")`:
`bridge-onenet`, `bridge-modbus`, `bridge-rtsp`), one series per bridge (label `worker`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.prometheus import Families, number


def add_bridges(out: Families, snapshots: Iterable[Mapping[str, Any]]) -> None:
    """Add the bridges' series to `out`."""
    for hb in snapshots:
        w = {"worker": hb.get("name", "bridge")}
        for key, raw in sorted((hb.get("counters") or {}).items()):
            v = number(raw)
            if v is not None:
                out.add(f"sc_bridge_{key}_total", "counter", f"bridge: {key.replace('_', ' ')}", w, v)
        for reason, raw in sorted((hb.get("deadlettered_by_reason") or {}).items()):
            v = number(raw)
            if v is not None:
                out.add("sc_bridge_deadlettered_by_reason_total", "counter", "items dead-lettered, by reason",
                        {**w, "reason": reason}, v)
        if "mqtt" in hb:
            out.add("sc_bridge_mqtt_up", "gauge", "1 when the bridge is connected to the broker", w,
                    1.0 if hb["mqtt"] == "ok" else 0.0)
        devices = hb.get("devices")
        if isinstance(devices, Mapping):  # polled devices (Modbus, RTSP cameras): how many are offline now
            off = sum(1 for d in devices.values() if isinstance(d, Mapping) and d.get("state") == "offline")
            out.add("sc_bridge_devices_offline", "gauge", "polled devices published offline", w, float(off))
        limited = hb.get("rate_limited_devices")
        if isinstance(limited, Mapping):
            out.add("sc_bridge_rate_limited_devices", "gauge", "devices cut by their budget in the last minute",
                    w, float(len(limited)))
