"""Settings from `SC_*` environment variables and one optional TOML file.

Precedence: environment > file (`SC_CONFIG`, default `./smartcommunity.toml` if present) > defaults.
The file uses the same names in lower case without the `SC_` prefix, e.g. `influx_db = "x"`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Settings:
    # The contract's variables (§5).
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "smartcommunity"
    http_port: int = 8050
    data_dir: str = "./var"
    alert_holdoff_s: float = 60.0
    api_token: str | None = None
    # The project's own.
    config: str | None = None
    log_level: str = "INFO"
    registry_file: str | None = None  # default: <data_dir>/registry/devices.geojson
    registry_poll_s: float = 2.0
    auto_install: bool = True  # apt-get install missing services when root on Debian/Ubuntu
    ingest_batch_size: int = 5000
    ingest_flush_ms: int = 200
    ingest_client_id: str = "sc-ingest"
    ingest_max_inflight: int = 20000
    deadletter_max: int = 100_000  # rows kept; oldest dropped first past it
    spool_max_bytes: int = 1_073_741_824
    alerts_client_id: str = "sc-alerts"
    alerts_rules_file: str | None = None  # default: bundled alerts/rules.yaml
    alerts_update_min_s: float = 1.0  # publish value updates of one alert at most this often
    alerts_tick_s: float = 1.0
    alerts_nearby_radius_m: float = 200.0  # units, shops, households named in an alert
    alerts_roster_file: str | None = None  # default: bundled alerts/oncall.yaml
    alerts_webhook_url: str | None = None  # notifications are also POSTed here (SMS/voice gateway)
    alerts_channels_file: str | None = None  # robots, mail, webhooks (alerts/channels/config.py)
    public_url: str | None = None  # the dashboard as staff reach it, for links; default http://127.0.0.1:<http_port>
    notify_timeout_s: float = 5.0  # one delivery attempt (HTTP request, SMTP session)
    notify_retry_first_s: float = 1.0  # first retry after this; doubles per failure ...
    notify_retry_max_s: float = 120.0  # ... up to this
    notify_give_up_s: float = 3600.0  # a notification not delivered this long after it was written is given up
    dashboard_refresh_ms: int = 1000  # an unchanged picture costs a refresh microseconds (dashboard/state.py)
    dashboard_stale_s: float = 30.0  # no new data for this long (or no ingest heartbeat): the stale banner
    dashboard_public_url: str | None = None  # base of links sent to staff phones; default http://127.0.0.1:<port>/
    dispatch_teams_file: str | None = None  # default: bundled alerts/teams.yaml (派单: teams and members)
    dispatch_link_ttl_s: float = 3 * 24 * 3600  # a signed field link works this long after it was sent
    dispatch_photo_max_bytes: int = 8 * 1024 * 1024  # one feedback photo at most (three per feedback)
    mqtt_keepalive_s: int = 30
    ingest_writers: int = 2  # writer threads per ingest process
    ingest_gzip: bool = False  # gzip write bodies (saves bandwidth to a remote InfluxDB, costs CPU)
    ingest_heartbeat_s: float = 1.0
    influx_raw_days: int = 30  # raw points kept (default policy autogen)
    influx_rollup_days: int = 400  # 1-minute aggregates kept (policy rollup_1m)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def public_base_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    @property
    def registry_path(self) -> Path:
        if self.registry_file:
            return Path(self.registry_file).resolve()
        from core.registry import REGISTRY_FILE_NAME  # here, not at the top: core.registry reads Settings

        return self.data_path / "registry" / REGISTRY_FILE_NAME

    @property
    def mqtt(self) -> UrlParts:
        return UrlParts.parse(self.mqtt_url, default_port=1883)

    @property
    def influx(self) -> UrlParts:
        return UrlParts.parse(self.influx_url, default_port=8086)

    def env(self) -> dict[str, str]:
        """These settings as `SC_*` variables, for child processes."""
        out: dict[str, str] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            out["SC_" + f.name.upper()] = ("1" if v else "0") if isinstance(v, bool) else str(v)
        return out


@dataclass(frozen=True)
class UrlParts:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str, default_port: int) -> UrlParts:
        u = urlsplit(url)
        if not u.scheme or not u.hostname:
            raise ValueError(f"not a URL: {url!r}")
        return cls(u.scheme, u.hostname, u.port or default_port, u.username, u.password)

    @property
    def is_loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


def _coerce(name: str, typ: Any, raw: Any) -> Any:
    if raw is None:
        return None
    text = str(raw).strip()
    if typ is bool or typ == bool | None:
        if isinstance(raw, bool):
            return raw
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"SC_{name.upper()}: expected a boolean, got {raw!r}")
    try:
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise ValueError(f"SC_{name.upper()}: expected a number, got {raw!r}") from None
    return text if text != "" or typ is str else None


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    env = os.environ if environ is None else environ
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    cfg = env.get("SC_CONFIG")
    path = Path(cfg) if cfg else Path("smartcommunity.toml")
    if cfg and not path.is_file():
        raise ValueError(f"SC_CONFIG={cfg}: no such file")
    if path.is_file():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
        values.update(data)
        values["config"] = str(path)
    for f in fields(Settings):
        key = "SC_" + f.name.upper()
        if key in env:
            values[f.name] = env[key]
    values.update(overrides)
    return Settings(**{k: _coerce(k, hints[k], v) for k, v in values.items()})
