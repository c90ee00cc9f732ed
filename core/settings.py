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
    store_url: str | None = None  # alert store: unset/sqlite:PATH = SQLite file under data_dir; postgresql://...
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
    # > 0: run the engine only while holding its partition's lease in the store (alerts/lease.py), this
    # many seconds long; a standby on another host takes over within it. 0: no lease (one engine).
    alerts_lease_s: float = 0.0
    # After any close, a re-rise of the same condition on the same device within this long reopens the
    # same alert (rules may set their own `watch_s`; gas rules watch 30 min, alerts/rules.yaml).
    alerts_watch_s: float = 600.0
    alerts_nearby_radius_m: float = 200.0  # units, shops, households named in an alert
    alerts_roster_file: str | None = None  # default: bundled alerts/oncall.yaml
    alerts_webhook_url: str | None = None  # notifications are also POSTed here (SMS/voice gateway)
    alerts_channels_file: str | None = None  # robots, mail, webhooks (alerts/channels/config.py)
    public_url: str | None = None  # the dashboard as staff reach it, for links; default http://127.0.0.1:<http_port>
    notify_timeout_s: float = 5.0  # one delivery attempt (HTTP request, SMTP session)
    notify_retry_first_s: float = 1.0  # first retry after this; doubles per failure ...
    notify_retry_max_s: float = 120.0  # ... up to this
    notify_give_up_s: float = 3600.0  # a notification not delivered this long after it was written is given up
    # Availability alerts (device_silent, camera_offline) wait this long before they are raised, so
    # that a compound or community going down at once gives one place alert, not one per device.
    alerts_fold_window_s: float = 30.0
    alerts_silence_check_s: float = 5.0  # how often the silence / place scan runs
    # How often open pages ask for news. An unchanged picture costs a refresh ~1 ms of server time and no
    # bytes (dashboard/state.py); 500 ms keeps a new alert or a click on another page under 2 s.
    dashboard_refresh_ms: int = 500
    dashboard_stale_s: float = 30.0  # no new data for this long (or no ingest heartbeat): the stale banner
    dashboard_session_idle_s: float = 43_200.0  # a staff session ends after this long without a request
    dashboard_session_max_s: float = 86_400.0  # and this long after sign-in, whatever happens
    dashboard_connection_limit: int = 4000  # open HTTP connections served at once (idle ones included)
    dashboard_channel_timeout_s: int = 30  # an HTTP connection silent this long is closed
    # Host names the dashboard answers to besides IP addresses and localhost, comma-separated
    # (e.g. "dashboard.checheng.local"); any other name is refused (DNS rebinding).
    dashboard_allowed_hosts: str | None = None
    dispatch_teams_file: str | None = None  # default: bundled alerts/teams.yaml (派单: teams and members)
    dispatch_link_ttl_s: float = 3 * 24 * 3600  # a signed field link works this long after it was sent
    dispatch_photo_max_bytes: int = 8 * 1024 * 1024  # one feedback photo at most (three per feedback)
    patrols_file: str | None = None  # default: bundled alerts/patrols.yaml (巡检计划: who, how often, checkpoints)
    mqtt_keepalive_s: int = 30
    ingest_writers: int = 2  # writer threads per ingest process
    ingest_gzip: bool = False  # gzip write bodies (saves bandwidth to a remote InfluxDB, costs CPU)
    ingest_heartbeat_s: float = 1.0
    influx_raw_days: int = 30  # raw points kept (default policy autogen)
    influx_rollup_days: int = 400  # 1-minute aggregates kept (policy rollup_1m)
    # Security (issue 12). Off by default: the contract's loopback broker without credentials.
    secure: bool = False  # SC_SECURE=1: broker needs credentials + offers TLS, InfluxDB auth on
    secrets_dir: str | None = None  # default: <data_dir>/secrets (0700; every file 0600)
    # Standby brokers, comma-separated URLs tried in turn after SC_MQTT_URL's when a connection attempt
    # fails (e.g. the community's edge broker, or a second center); same scheme and credentials.
    mqtt_standby_urls: str | None = None
    mqtt_account: str | None = None  # broker account of this process; password in <secrets>/mqtt/<account>
    mqtt_ca_file: str | None = None  # CA that signs the broker's certificate; default <data_dir>/pki/ca.pem
    mqtt_tls_port: int = 8883  # TLS listener of the broker `up` starts when secure
    mqtt_plain: bool = True  # with SC_SECURE, also a plain listener on loopback (credentials still required)
    mqtt_bind: str = "127.0.0.1"  # address the broker `up` starts listens on (not loopback: secure only)
    mqtt_max_packet_bytes: int = 65536  # secure broker: larger packets disconnect their sender
    mqtt_max_connections: int = 20000  # secure broker: connections beyond this are refused
    influx_account: str | None = None  # InfluxDB account of this process; password in <secrets>/influx/<account>
    ingest_device_rate: float = 20.0  # messages/s one device may send on average (token bucket)
    ingest_device_burst: int = 200  # ... and at once; beyond: dead letter `rate_limited`
    deadletter_max_bytes: int = 268_435_456  # dead-letter store bound in payload bytes (oldest dropped)
    demo_responders_after_s: float = 180.0  # demo: the scripted staff act this long after the leak (0: none)
    demo_inbox_port: int = 0  # demo: its local robots/SMS receiver listens here; the inbox page shows it (0: none)
    # /api/health warns (clock) when device timestamps trail or lead the host clock by more than this on
    # average over ingest's last readings, or when NTP says the host clock is not synchronised.
    clock_skew_warn_s: float = 5.0
    data_scan_s: float = 60.0  # how often the dashboard measures each part's folder under SC_DATA_DIR
    data_dir_max_pct: float = 50.0  # /api/health warns (disk) when SC_DATA_DIR holds more of its disk than this
    log_max_bytes: int = 10_485_760  # a part's log file under SC_DATA_DIR/log (`up`) rotates past this ...
    log_backups: int = 5  # ... keeping this many older files (<name>.log.1 newest); under systemd: the journal

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
    def secrets_path(self) -> Path:
        return Path(self.secrets_dir).resolve() if self.secrets_dir else self.data_path / "secrets"

    @property
    def mqtt(self) -> UrlParts:
        return UrlParts.parse(self.mqtt_url, default_port=1883)

    @property
    def mqtt_endpoint(self) -> UrlParts:
        """Where this project's clients connect: under SC_SECURE an mqtt:// URL becomes TLS on
        SC_MQTT_TLS_PORT of the same host; an mqtts:// URL is used as it is."""
        u = self.mqtt
        if self.secure and u.scheme == "mqtt":
            return UrlParts("mqtts", u.host, self.mqtt_tls_port, u.username, u.password)
        return u

    @property
    def mqtt_endpoints(self) -> list[UrlParts]:
        """SC_MQTT_URL's endpoint, then each of SC_MQTT_STANDBY_URLS' (SC_SECURE applied to each alike)."""
        out = [self.mqtt_endpoint]
        for raw in (self.mqtt_standby_urls or "").split(","):
            if raw.strip():
                u = UrlParts.parse(raw.strip(), default_port=1883)
                if self.secure and u.scheme == "mqtt":
                    u = UrlParts("mqtts", u.host, self.mqtt_tls_port, u.username, u.password)
                if u.tls != out[0].tls:
                    raise ValueError(f"SC_MQTT_STANDBY_URLS: {raw.strip()!r} must use TLS as SC_MQTT_URL does, or not")
                out.append(u)
        return out

    @property
    def ca_path(self) -> Path:
        return Path(self.mqtt_ca_file).resolve() if self.mqtt_ca_file else self.data_path / "pki" / "ca.pem"

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
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "ssl", "tls", "https")

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
