"""Verbs `bridge onenet` (the OneNET data-push endpoint, bridges/onenet.py), `bridge modbus`
(Modbus TCP polling, bridges/modbus.py) and `bridge rtsp` (camera availability, bridges/rtsp.py).

Credentials: `--token` is the contract's spelling, but a command line is visible to every user of
the machine (`ps`), so a deployment gives the token by `--token-file` (0600), or as
`SC_SECRET_ONENET_TOKEN`, or in `<secrets>/onenet/token` (0600); the AES key of the platform's
安全模式 likewise by `--aes-key-file`, `SC_SECRET_ONENET_AESKEY` or `<secrets>/onenet/aeskey`.
The broker account is the process's own (`SC_MQTT_ACCOUNT`, core/mqtt.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    b = sub.add_parser("bridge", help="bridges for devices that do not speak the contract")
    bsub = b.add_subparsers(dest="bridge_cmd", required=True, metavar="BRIDGE")
    p = bsub.add_parser("onenet", help="HTTP endpoint for China Mobile OneNET's data push")
    p.add_argument("--port", type=int, required=True, help="port the platform pushes to")
    p.add_argument("--host", default="0.0.0.0",
                   help="address to listen on (default all: the platform pushes from outside; every POST is "
                        "signature-checked)")
    p.add_argument("--token", help="the push token (visible in `ps`: prefer --token-file or SC_SECRET_ONENET_TOKEN)")
    p.add_argument("--token-file", type=Path, help="file holding the token, mode 0600")
    p.add_argument("--aes-key-file", type=Path, help="file holding the 安全模式 AES key, mode 0600")
    p.add_argument("--map", type=Path, help='JSON {"devices": {dev_id: device_id}, "streams": {ds_id: metric}}')
    # Defaults (None here) are bridges/onenet.py's: the handler imports it, `--help` stays light.
    p.add_argument("--max-body-bytes", type=int, help="larger pushes get 413 (default 1 MiB)")
    p.add_argument("--device-rate", type=float,
                   help="points/s one device may push on average; beyond: dead letter rate_limited (default 2)")
    p.add_argument("--device-burst", type=int, help="... and at once (default 120)")
    p.set_defaults(func=run_onenet)
    register_modbus(bsub)
    register_rtsp(bsub)


def credentials(args: argparse.Namespace, settings: Settings) -> tuple[str, str | None]:
    """(token, AES key or None) from the arguments, the environment or the secrets folder."""
    from bridges.onenet import ConfigError, read_private_text
    from core.secrets import SecretError, read_secret, secret_file

    if args.token:
        log.warning("the OneNET token was given on the command line, where `ps` shows it: "
                    "use --token-file or SC_SECRET_ONENET_TOKEN in a deployment")
        token = args.token
    elif args.token_file:
        token = read_private_text(args.token_file, "token")
    else:
        try:
            token = read_secret(settings, "onenet", "token")
        except SecretError as exc:
            if "does not exist" not in str(exc):
                raise ConfigError(str(exc)) from None  # e.g. a secret file others can read
            raise ConfigError(f"no OneNET token: give --token-file FILE (mode 0600), set SC_SECRET_ONENET_TOKEN, "
                              f"or write it to {secret_file(settings, 'onenet', 'token')} (mode 0600)") from None
    if args.aes_key_file:
        return token, read_private_text(args.aes_key_file, "AES key")
    try:
        return token, read_secret(settings, "onenet", "aeskey")
    except SecretError as exc:
        if "does not exist" in str(exc):
            return token, None  # plain mode only; an encrypted push is then dead-lettered `undecryptable`
        raise ConfigError(str(exc)) from None


def run_onenet(args: argparse.Namespace, settings: Settings) -> int:
    from bridges import onenet
    from bridges.onenet import ConfigError, OneNetBridge, StreamMap, load_map, serve
    from core import procs

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    try:
        token, aeskey = credentials(args, settings)
        mapping = load_map(args.map) if args.map else StreamMap()
        bridge = OneNetBridge(settings, token, aeskey, mapping,
                              max_body_bytes=given(args.max_body_bytes, onenet.DEFAULT_MAX_BODY_BYTES),
                              device_rate=given(args.device_rate, onenet.DEFAULT_DEVICE_RATE),
                              device_burst=given(args.device_burst, onenet.DEFAULT_DEVICE_BURST))
    except ConfigError as exc:
        print(f"smartcommunity bridge onenet: {exc}", file=sys.stderr)
        return 2
    bridge.start()
    server = serve(bridge, args.host, args.port)
    procs.on_stop(_stop)  # waitress's loop closes its sockets on SystemExit
    log.info("OneNET bridge listening on %s:%d (%d mapped devices, %d mapped streams, encrypted mode %s)",
             args.host, args.port, len(mapping.devices), len(mapping.streams), "on" if aeskey else "off")
    try:
        server.run()
    finally:
        bridge.close()
    return 0


def _stop() -> None:
    raise SystemExit(0)


def register_modbus(bsub: Any) -> None:
    p = bsub.add_parser("modbus", help="poll electrical-fire monitors over Modbus TCP")
    p.add_argument("--config", type=Path, required=True, help="register maps and gateways (modbus.sample.yaml)")
    p.set_defaults(func=run_modbus)


def _run_polling(name: str, module: str, bridge_class: str, args: argparse.Namespace, settings: Settings) -> int:
    """A polling bridge from its config file, until stopped: a bad config is exit 2 with its reason."""
    import importlib

    from core import procs

    mod = importlib.import_module(module)
    try:
        bridge = getattr(mod, bridge_class)(settings, mod.load_config(args.config))
    except mod.ConfigError as exc:
        print(f"smartcommunity bridge {name}: {exc}", file=sys.stderr)
        return 2
    procs.on_stop(bridge.stop)
    try:
        bridge.run_forever()
    finally:
        bridge.close()
    return 0


def run_modbus(args: argparse.Namespace, settings: Settings) -> int:
    return _run_polling("modbus", "bridges.modbus", "ModbusBridge", args, settings)


def register_rtsp(bsub: Any) -> None:
    p = bsub.add_parser("rtsp", help="camera availability by RTSP OPTIONS/DESCRIBE → the cameras' status")
    p.add_argument("--config", type=Path, required=True, help="cameras and their credentials' names (rtsp.sample.yaml)")
    p.set_defaults(func=run_rtsp)


def run_rtsp(args: argparse.Namespace, settings: Settings) -> int:
    return _run_polling("rtsp", "bridges.rtsp", "RtspBridge", args, settings)
