"""GET /metrics: the workers' heartbeat counters in Prometheus text format (version 0.0.4).

One series per worker (label `worker`); sum in PromQL. Counter names are taken from the heartbeat
as they come, so a counter a worker adds later (spooled, replayed, ...) shows up without a change here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from smartcommunity import heartbeat

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BAD = re.compile(r"[^a-zA-Z0-9_]")

HELP: dict[str, str] = {
    "received": "MQTT messages received",
    "stored": "points written to InfluxDB",
    "deadlettered": "messages dead-lettered (all reasons)",
    "spooled": "points spooled to disk while InfluxDB was down",
    "replayed": "spooled points written back to InfluxDB",
    "write_retries": "InfluxDB write retries",
}


def _name(raw: str) -> str:
    return _BAD.sub("_", raw).strip("_").lower() or "unnamed"


def _label(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


class _Out:
    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, mtype: str, help_: str, labels: dict[str, Any], value: float) -> None:
        fam = self.families.setdefault(name, (mtype, help_, []))
        lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        fam[2].append(f"{name}{{{lab}}} {_fmt(value)}")

    def text(self) -> str:
        lines: list[str] = []
        for name, (mtype, help_, samples) in self.families.items():
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {mtype}", *samples]
        return "\n".join(lines) + "\n"


def render_metrics(data_path: Path) -> str:
    out = _Out()
    for prefix in ("ingest", "alerts"):
        for hb in heartbeat.read_all(data_path, prefix):
            worker = {"worker": hb.get("name", prefix)}
            up = 1.0 if hb.get("fresh") and not hb.get("stopped") else 0.0
            out.add("sc_worker_up", "gauge", "1 when the worker's heartbeat is fresh", worker | {"part": prefix}, up)
            counters = hb.get("counters") or {}
            for key, raw in sorted(counters.items()) if isinstance(counters, dict) else ():
                v = _num(raw)
                if v is not None:
                    name = f"sc_{prefix}_{_name(key)}_total"
                    out.add(name, "counter", HELP.get(key, f"{prefix} counter {key}"), worker, v)
            reasons = hb.get("deadlettered_by_reason") or {}
            for reason, raw in sorted(reasons.items()) if isinstance(reasons, dict) else ():
                v = _num(raw)
                if v is not None:
                    out.add(
                        f"sc_{prefix}_deadlettered_by_reason_total",
                        "counter",
                        "messages dead-lettered, by contract reason",
                        worker | {"reason": reason},
                        v,
                    )
            for key, name, help_ in (
                ("lag_ms", f"sc_{prefix}_lag_seconds", "age of the newest message at storage time"),
                ("deadletter_dropped", f"sc_{prefix}_deadletter_dropped_total", "dead letters dropped past the cap"),
                ("registry_devices", f"sc_{prefix}_registry_devices", "devices in the registry"),
            ):
                v = _num(hb.get(key))
                if v is not None:
                    value = v / 1000 if key == "lag_ms" else v
                    mtype = "counter" if name.endswith("_total") else "gauge"
                    out.add(name, mtype, help_, worker, value)
            at = _num(hb.get("at"))
            if at is not None:
                out.add(
                    "sc_worker_heartbeat_timestamp_seconds",
                    "gauge",
                    "time of the last heartbeat",
                    worker | {"part": prefix},
                    at,
                )
    return out.text()
