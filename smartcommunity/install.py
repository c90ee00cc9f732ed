"""Verb `install`: systemd units that run the system as a service on the street's own server.

One unit per part `up` runs (ingest, alerts, dashboard, with the verbs and accounts `up` gives them),
the bridges that are configured, and the broker and database either as `up` starts them
(`smartcommunity services run NAME`: the same configs, in the foreground) or the distribution's own
`mosquitto.service` / `influxdb.service`; `smartcommunity.target` starts them all. Each unit runs as
the service user, restarts on exit, and sees a read-only system but for its data directory under
/var/lib (`ProtectSystem=strict`, `ReadWritePaths=`, `NoNewPrivileges=yes`, `PrivateTmp=yes`). Its
settings are the SC_* variables of an environment file (0600, read by systemd as root), with
`SC_DATA_DIR` the state directory. The parts log to stderr, which systemd gives to the journal.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

from core.accounts import part_env
from core.settings import Settings
from smartcommunity.services_cli import PARTS

STATE_NAME = "smartcommunity"
DATA_DIR = Path("/var/lib") / STATE_NAME
UNIT_DIR = Path("/etc/systemd/system")
ENV_FILE = Path("/etc/smartcommunity/smartcommunity.env")
TARGET = "smartcommunity.target"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DISTRO_SERVICES = {"mosquitto": "mosquitto.service", "influxdb": "influxdb.service"}


@dataclass(frozen=True)
class Unit:
    part: str  # as `up` names it, or mosquitto / influxdb / bridge-onenet / bridge-modbus
    verb: list[str]  # the arguments after `python -m smartcommunity`
    after_services: bool = True  # started after the broker and the database

    @property
    def name(self) -> str:
        return f"smartcommunity-{self.part}.service"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("install", help="write systemd units for every part (or --print them)")
    p.add_argument("--print", action="store_true", help="print the units and the environment file instead")
    p.add_argument("--user", default=STATE_NAME, help=f"service user (default {STATE_NAME}; created if missing)")
    p.add_argument("--services", choices=("own", "distro", "none"), default="own",
                   help="Mosquitto/InfluxDB: started as `up` starts them (own, default), the distribution's "
                        "mosquitto.service/influxdb.service (distro), or elsewhere (none)")
    p.add_argument("--onenet-port", type=int, help="run the OneNET push bridge on this port")
    p.add_argument("--onenet-map", type=Path, help="its device/stream map (JSON)")
    p.add_argument("--modbus-config", type=Path, help="run the Modbus bridge with this config (YAML)")
    p.add_argument("--rtsp-config", type=Path, help="run the RTSP camera check with this config (YAML)")
    p.add_argument("--unit-dir", type=Path, default=UNIT_DIR, help=f"where to write the units (default {UNIT_DIR})")
    p.add_argument("--env-file", type=Path, default=ENV_FILE, help=f"settings file (default {ENV_FILE})")
    p.add_argument("--no-create-user", action="store_true", help="do not create the service user")
    p.set_defaults(func=run_install)


def units(args: argparse.Namespace) -> list[Unit]:
    out: list[Unit] = []
    if args.services == "own":
        out += [Unit("mosquitto", ["services", "run", "mosquitto"], False),
                Unit("influxdb", ["services", "run", "influxdb"], False)]
    out += [Unit(name, verb) for name, verb in PARTS]
    if args.onenet_port:
        verb = ["bridge", "onenet", "--port", str(args.onenet_port)]
        if args.onenet_map:
            verb += ["--map", str(args.onenet_map.resolve())]
        out.append(Unit("bridge-onenet", verb))
    if args.modbus_config:
        out.append(Unit("bridge-modbus", ["bridge", "modbus", "--config", str(args.modbus_config.resolve())]))
    if args.rtsp_config:
        out.append(Unit("bridge-rtsp", ["bridge", "rtsp", "--config", str(args.rtsp_config.resolve())]))
    return out


def service_units(args: argparse.Namespace) -> list[str]:
    """The units the parts start after: ours, the distribution's, or none."""
    if args.services == "own":
        return ["smartcommunity-mosquitto.service", "smartcommunity-influxdb.service"]
    if args.services == "distro":
        return list(DISTRO_SERVICES.values())
    return []


def render_unit(unit: Unit, args: argparse.Namespace, settings: Settings) -> str:
    deps = " ".join(["network-online.target", *(service_units(args) if unit.after_services else [])])
    env = {"PYTHONPATH": str(PROJECT_ROOT), **part_env(unit.part, settings.secure)}
    exec_start = " ".join([sys.executable, "-m", "smartcommunity", *unit.verb])
    return f"""# Written by `smartcommunity install`; run it again rather than editing this file.
[Unit]
Description=smartcommunity {unit.part}
PartOf={TARGET}
Wants={deps}
After={deps}
# Restarted at most 10 times in 5 minutes; then it stays down and `systemctl status` says why.
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=simple
User={args.user}
Group={args.user}
EnvironmentFile={args.env_file}
{chr(10).join(f"Environment={k}={v}" for k, v in env.items())}
WorkingDirectory={DATA_DIR}
ExecStart={exec_start}
Restart=always
RestartSec=2
TimeoutStopSec=30
UMask=0077
StateDirectory={STATE_NAME}
StateDirectoryMode=0700
ProtectSystem=strict
ReadWritePaths={DATA_DIR}
ProtectHome=read-only
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy={TARGET}
"""


def render_target(all_units: list[Unit], args: argparse.Namespace) -> str:
    names = " ".join(u.name for u in all_units)
    extra = " ".join(DISTRO_SERVICES.values()) if args.services == "distro" else ""
    return f"""# Written by `smartcommunity install`.
[Unit]
Description=smartcommunity: every part of the safety monitoring system
Wants={names} {extra}
After=network-online.target

[Install]
WantedBy=multi-user.target
""".replace(" \n", "\n")


def render_env(settings: Settings) -> str:
    """The settings that differ from the defaults, with the data directory under /var/lib."""
    chosen = replace(settings, data_dir=str(DATA_DIR), config=None)
    defaults = Settings()
    lines = ["# smartcommunity settings (SC_* variables) for the systemd units; read by systemd as root."]
    for f in fields(Settings):
        v = getattr(chosen, f.name)
        if v is None or (v == getattr(defaults, f.name) and f.name != "data_dir"):
            continue
        text = ("1" if v else "0") if isinstance(v, bool) else str(v)
        lines.append(f"SC_{f.name.upper()}={text}")
    return "\n".join(lines) + "\n"


def rendered(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """File name → text: every unit, the target (all in the unit directory) and the environment file."""
    all_units = units(args)
    out = {u.name: render_unit(u, args, settings) for u in all_units}
    out[TARGET] = render_target(all_units, args)
    return out


def ensure_user(name: str) -> str | None:
    """Create the system user (no login, home the data directory) if missing; what was done, or None."""
    try:
        pwd.getpwnam(name)
        return None
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run([useradd, "--system", "--user-group", "--home-dir", str(DATA_DIR), "--no-create-home",
                    "--shell", "/usr/sbin/nologin", name], check=True)
    return f"created system user {name}"


def run_install(args: argparse.Namespace, settings: Settings) -> int:
    files = rendered(args, settings)
    env_text = render_env(settings)
    if args.print:
        for name, text in files.items():
            print(f"### {args.unit_dir / name}\n{text}")
        print(f"### {args.env_file} (mode 0600)\n{env_text}", end="")
        return 0
    if not args.no_create_user:
        if os.geteuid() != 0:
            print("smartcommunity install: creating the service user needs root (or --no-create-user)",
                  file=sys.stderr)
            return 1
        done = ensure_user(args.user)
        if done:
            print(done)
    args.unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = args.unit_dir / name
        path.write_text(text)
        os.chmod(path, 0o644)  # systemd reads units as root, but `systemctl cat` and tools as anyone
        print(f"wrote {path}")
    args.env_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(args.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(env_text)
    os.chmod(args.env_file, 0o600)  # it may hold SC_API_TOKEN
    print(f"wrote {args.env_file} (0600)")
    print(f"next: systemctl daemon-reload && systemctl enable --now {TARGET}   "
          f"(data in {DATA_DIR}; logs: journalctl -u 'smartcommunity-*')")
    return 0
