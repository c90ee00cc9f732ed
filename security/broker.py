"""Broker accounts and their ACL: Mosquitto's password file and acl_file, written by the project.

The source of truth is `<SC_DATA_DIR>/mosquitto/accounts.json` (0600): every account with its
role and its password hash (Mosquitto 2's `$7$` PBKDF2-SHA512 format, the one `mosquitto_passwd`
writes). From it the project renders `passwd` and `acl` (both 0600) and sends the broker SIGHUP,
on which Mosquitto re-reads both and drops connections whose account is gone — revocation without
a restart, and without touching the other clients.

Rights (least privilege; nothing is allowed that is not listed):
- a device publishes only under `sc/{community}/{kind}/{device_id}/#` (its registry entry), and
  reads nothing;
- svc.ingest reads `sc/#` and alone writes the records it accepted on `sc-internal/records/#`
  (ingest/forward.py); svc.alerts (and each partition's svc.alerts-{community}) reads those and is
  the only service that publishes on `sc/alerts/#` (and watches it); staff actions reach it as
  commands (alerts/command/); svc.dashboard and svc.health only connect (svc.dashboard-live reads
  alert copies, device status and the edges' uplink state); svc.simulator (demo only)
  publishes as the registered devices; svc.edge-{community} (the bridge of that community's edge
  broker, smartcommunity/edge.py) publishes under `sc/{community}/#` and its uplink state.
The secure broker also sets `use_username_as_clientid`, so an account cannot take over (and wipe)
another client's session by reusing its client id: one connection per account.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.accounts import (
    INGEST_WORKER_ACCOUNTS,
    MQTT_ALERTS,
    MQTT_DASHBOARD,
    MQTT_DASHBOARD_LIVE,
    MQTT_DEMO_STORY,
    MQTT_HEALTH,
    MQTT_INGEST,
    MQTT_SIMULATOR,
    edge_account,
)
from core.contract import ALERT_TOPIC_ROOT, COMMUNITIES, DEVICE_ID_RE, TOPIC_ROOT
from core.registry import Device
from core.secrets import ensure_secret, new_password, private_dir, write_private
from core.settings import Settings
from ingest.forward import RECORDS_ROOT

HASH_ITERATIONS = 1000  # passwords are 256 random bits: stretching is not what protects them
SALT_BYTES = 12

# Where each edge's bridge says whether its uplink is up ("1"/"0", retained: Mosquitto's bridge
# notifications, the "0" as its will), outside the contract's `sc/` tree.
EDGE_STATE_ROOT = "sc-internal/edge"


def edge_state_topic(community: str) -> str:
    return f"{EDGE_STATE_ROOT}/{community}/state"


_INGEST_RIGHTS = [("read", f"{TOPIC_ROOT}/#"), ("write", f"{RECORDS_ROOT}/#")]
_ALERTS_RIGHTS = [("read", f"{RECORDS_ROOT}/#"), ("read", f"{ALERT_TOPIC_ROOT}/#"), ("write", f"{ALERT_TOPIC_ROOT}/#")]
SERVICE_RIGHTS: dict[str, list[tuple[str, str]]] = {
    MQTT_INGEST: _INGEST_RIGHTS,
    MQTT_ALERTS: _ALERTS_RIGHTS,
    **{f"{MQTT_ALERTS}-{c}": _ALERTS_RIGHTS for c in COMMUNITIES},
    MQTT_DASHBOARD: [],  # staff actions are commands to the alerts service (alerts/command/), never publishes
    MQTT_DASHBOARD_LIVE: [("read", f"{ALERT_TOPIC_ROOT}/#"), ("read", f"{TOPIC_ROOT}/+/+/+/status"),
                          ("read", f"{EDGE_STATE_ROOT}/#")],
    MQTT_HEALTH: [],
    **{f"{MQTT_INGEST}-{w}": _INGEST_RIGHTS for w in range(INGEST_WORKER_ACCOUNTS)},
    # A community's edge broker forwards what its devices published (the edge's own ACL holds each
    # device to its topics) and reports its uplink; it reads nothing.
    **{edge_account(c): [("write", f"{TOPIC_ROOT}/{c}/#"), ("write", edge_state_topic(c))] for c in COMMUNITIES},
}


# Accounts of `make demo` only (made by `devices provision --simulator`, never by a plain `up`).
DEMO_RIGHTS: dict[str, list[tuple[str, str]]] = {
    MQTT_DEMO_STORY: [],  # the scripted staff act through /api with their own tokens
}


class AccountError(ValueError):
    pass


def hash_password(password: str, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        want = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(want, got)


def device_prefix(dev: Device) -> str:
    return f"{TOPIC_ROOT}/{dev.community}/{dev.kind}/{dev.device_id}"


@dataclass(frozen=True)
class BrokerFiles:
    root: Path

    @property
    def accounts(self) -> Path:
        return self.root / "accounts.json"

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    @property
    def acl(self) -> Path:
        return self.root / "acl"

    @property
    def pid(self) -> Path:
        return self.root / "mosquitto.pid"


def broker_files(settings: Settings) -> BrokerFiles:
    return BrokerFiles(settings.data_path / "mosquitto")


def load_accounts(files: BrokerFiles) -> dict[str, dict[str, Any]]:
    if not files.accounts.exists():
        return {}
    data = json.loads(files.accounts.read_text())
    return dict(data.get("accounts", {}))


def render_acl(accounts: dict[str, dict[str, Any]], registry: dict[str, Device]) -> str:
    lines = ["# Written by smartcommunity from accounts.json; edits are overwritten.",
             "# No line before the first `user`: anonymous clients (none are let in) get nothing."]
    for name in sorted(accounts):
        acct = accounts[name]
        lines.append(f"\nuser {name}")
        role = acct["role"]
        if role == "device":
            lines.append(f"topic write {TOPIC_ROOT}/{acct['community']}/{acct['kind']}/{name}/#")
        elif role == "simulator":
            for dev_id in sorted(registry):
                lines.append(f"topic write {device_prefix(registry[dev_id])}/#")
        else:
            for access, topic in SERVICE_RIGHTS.get(name) or DEMO_RIGHTS.get(name, []):
                lines.append(f"topic {access} {topic}")
    return "\n".join(lines) + "\n"


def render_passwd(accounts: dict[str, dict[str, Any]]) -> str:
    return "".join(f"{name}:{accounts[name]['hash']}\n" for name in sorted(accounts))


def save(files: BrokerFiles, accounts: dict[str, dict[str, Any]], registry: dict[str, Device]) -> None:
    private_dir(files.root)
    write_private(files.accounts, json.dumps({"version": 1, "accounts": accounts}, indent=1, sort_keys=True))
    write_private(files.passwd, render_passwd(accounts))
    write_private(files.acl, render_acl(accounts, registry))


def reload_broker(files: BrokerFiles) -> bool:
    """SIGHUP the broker `up` started (its pid file): it re-reads passwd and acl. False if none runs."""
    try:
        pid = int(files.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"mosquitto" not in cmd:
        return False  # a stale pid file naming some other process
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGHUP)
        return True
    return False


def ensure_service_accounts(settings: Settings, registry: dict[str, Device], simulator: bool = False) -> list[str]:
    """The services' accounts exist and match their 0600 secrets (made the first time)."""
    files = broker_files(settings)
    accounts = load_accounts(files)
    demo = [MQTT_SIMULATOR, *DEMO_RIGHTS]
    names = [*SERVICE_RIGHTS, *(n for n in demo if simulator or n in accounts)]
    changed = []
    for name in names:
        password = ensure_secret(settings, "mqtt", name)
        have = accounts.get(name)
        role = "simulator" if name == MQTT_SIMULATOR else "service"
        if have is None or have.get("role") != role or not verify_password(password, have.get("hash", "")):
            accounts[name] = {"role": role, "hash": hash_password(password)}
            changed.append(name)
    if changed or not files.passwd.exists() or not files.acl.exists():
        save(files, accounts, registry)
    return changed


@dataclass
class ProvisionResult:
    issued: list[str]  # accounts given a new password (written to the out dir)
    kept: list[str]  # already provisioned, password unchanged
    removed: list[str]  # device accounts whose device left the registry
    out_dir: Path
    reloaded: bool


def provision(settings: Settings, registry: dict[str, Device], communities: list[str] | None = None,
              out_dir: Path | None = None, rotate: bool = False, simulator: bool = False) -> ProvisionResult:
    """Give every registered device (of `communities`, default all) its own broker account.

    New passwords are written once, one 0600 JSON file per device in `out_dir` (default
    `<secrets>/devices`); the project keeps only their hashes. `rotate` issues new passwords to
    devices that already had one. Device accounts whose device is no longer registered are removed.
    """
    files = broker_files(settings)
    ensure_service_accounts(settings, registry, simulator=simulator)
    accounts = load_accounts(files)
    out = private_dir(out_dir or settings.secrets_path / "devices")
    endpoint = settings.mqtt_endpoint if settings.secure else settings.mqtt
    issued, kept, removed = [], [], []
    for name, acct in list(accounts.items()):
        if acct["role"] == "device" and name not in registry:
            del accounts[name]
            removed.append(name)
    for dev_id in sorted(registry):
        dev = registry[dev_id]
        if communities and dev.community not in communities:
            continue
        if not DEVICE_ID_RE.match(dev_id):
            raise AccountError(f"device id {dev_id!r} cannot be a broker account")
        have = accounts.get(dev_id)
        same_place = have is not None and (have.get("community"), have.get("kind")) == (dev.community, dev.kind)
        if have is not None and same_place and not rotate:
            kept.append(dev_id)
            continue
        password = new_password()
        accounts[dev_id] = {"role": "device", "community": dev.community, "kind": dev.kind,
                            "hash": hash_password(password)}
        write_private(out / f"{dev_id}.json", json.dumps({
            "device_id": dev_id, "community": dev.community, "kind": dev.kind,
            "username": dev_id, "password": password, "client_id": dev_id,
            "publish_prefix": device_prefix(dev) + "/",
            "broker": f"{endpoint.scheme}://{endpoint.host}:{endpoint.port}",
            "ca_file": str(settings.ca_path),
        }, ensure_ascii=False, indent=1) + "\n")
        issued.append(dev_id)
    save(files, accounts, registry)
    return ProvisionResult(issued, kept, removed, out, reload_broker(files))


def revoke(settings: Settings, registry: dict[str, Device], names: list[str]) -> tuple[list[str], bool]:
    """Remove accounts (devices or services); the broker drops their connections on reload."""
    files = broker_files(settings)
    accounts = load_accounts(files)
    unknown = [n for n in names if n not in accounts]
    if unknown:
        raise AccountError(f"no such broker account: {', '.join(unknown)}")
    for n in names:
        del accounts[n]
        for leftover in (settings.secrets_path / "devices" / f"{n}.json",):
            leftover.unlink(missing_ok=True)
    save(files, accounts, registry)
    return names, reload_broker(files)


def secure_conf(settings: Settings) -> str:
    """Global security options of the broker's config (the listeners come from `listeners`)."""
    files = broker_files(settings)
    return f"""allow_anonymous false
password_file {files.passwd}
acl_file {files.acl}
max_packet_size {settings.mqtt_max_packet_bytes}
"""


def _listener_opts(settings: Settings) -> str:
    # One connection per account: no client can take over another account's session by its client id.
    return f"use_username_as_clientid true\nmax_connections {settings.mqtt_max_connections}\n"


def listeners(settings: Settings, pki_dir: Path) -> str:
    """The TLS listener on SC_MQTT_BIND, and a plain one on loopback (credentials still required)
    unless SC_MQTT_PLAIN=0."""
    return _tls_listeners(settings, settings.mqtt_tls_port, settings.mqtt_bind, settings.mqtt.port,
                          pki_dir / "ca.pem", pki_dir / "broker.pem", pki_dir / "broker.key")


def _tls_listeners(settings: Settings, tls_port: int, bind: str, plain_port: int, cafile: Path, certfile: Path,
                   keyfile: Path) -> str:
    """TLS on `bind`, and the plain loopback listener unless SC_MQTT_PLAIN=0 (a center's broker, an edge's)."""
    out = f"""listener {tls_port} {bind}
{_listener_opts(settings)}cafile {cafile}
certfile {certfile}
keyfile {keyfile}
tls_version tlsv1.2
"""
    if settings.mqtt_plain:
        # Loopback only, whatever SC_MQTT_BIND says: passwords never cross the network in clear text.
        out += f"listener {plain_port} 127.0.0.1\n{_listener_opts(settings)}"
    return out


def prepare_broker(settings: Settings) -> str:
    """Before a secure broker starts: CA and certificate, the services' accounts, the config block."""
    from core.registry import ensure_registry, load_registry
    from security.pki import ensure_pki

    pki = ensure_pki(settings.data_path / "pki", [settings.mqtt_bind, settings.mqtt.host])
    registry = load_registry(ensure_registry(settings))
    ensure_service_accounts(settings, dict(registry.items()))
    return listeners(settings, pki.dir) + secure_conf(settings)


def edge_access(settings: Settings, community: str, directory: Path, port: int, tls_port: int, bind: str,
                hosts: list[str]) -> str:
    """The access block of a community's edge broker (smartcommunity/edge.py), its files in `directory`:
    that community's device accounts and their ACL (devices keep their accounts and topics), the
    project's CA, and a certificate for the edge naming `bind` and `hosts`. Listeners as the center's:
    TLS on `bind`, plus a plain one on loopback (credentials still required) unless SC_MQTT_PLAIN=0."""
    from security.pki import ensure_cert, ensure_pki

    pki = ensure_pki(settings.data_path / "pki", [settings.mqtt_bind, settings.mqtt.host])
    private_dir(directory)
    shutil.copyfile(pki.ca_cert, directory / "ca.pem")
    ensure_cert(pki, directory / "edge.pem", directory / "edge.key", [bind, *hosts],
                name=f"smartcommunity edge {community}")
    accounts = {name: acct for name, acct in load_accounts(broker_files(settings)).items()
                if acct["role"] == "device" and acct.get("community") == community}
    edge = BrokerFiles(directory)
    write_private(edge.passwd, render_passwd(accounts))
    write_private(edge.acl, render_acl(accounts, {}))
    out = _tls_listeners(settings, tls_port, bind, port, directory / "ca.pem", directory / "edge.pem",
                         directory / "edge.key")
    return out + f"""allow_anonymous false
password_file {edge.passwd}
acl_file {edge.acl}
max_packet_size {settings.mqtt_max_packet_bytes}
"""
