"""Verbs `devices provision` and `devices revoke` (added to the `devices` verb of geodata/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.contract import COMMUNITIES
from core.settings import Settings


def add_device_verbs(dsub: Any) -> None:
    p = dsub.add_parser("provision", help="broker credentials + ACL for every registered device")
    p.add_argument("--community", action="append", choices=sorted(COMMUNITIES), default=[],
                   help="only devices of this community (repeatable; default all)")
    p.add_argument("--out", type=Path, help="where each new device's credentials go, one 0600 JSON file "
                   "per device (default <SC_DATA_DIR>/secrets/devices)")
    p.add_argument("--rotate", action="store_true", help="new passwords for devices that already have one")
    p.add_argument("--simulator", action="store_true",
                   help="also the svc.simulator account that may publish as every registered device (demo)")
    p.set_defaults(func=cmd_provision)
    p = dsub.add_parser("revoke", help="remove broker accounts (devices or services); takes effect at once")
    p.add_argument("names", nargs="+", metavar="DEVICE_ID")
    p.set_defaults(func=cmd_revoke)


def _registry(settings: Settings) -> dict[str, Any]:
    from core.registry import ensure_registry, load_registry

    return dict(load_registry(ensure_registry(settings)).items())


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import RegistryError
    from security.broker import AccountError, provision

    try:
        res = provision(settings, _registry(settings), args.community or None, args.out, args.rotate,
                        args.simulator)
    except (RegistryError, AccountError) as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 2
    print(f"{len(res.issued)} device accounts issued (credentials in {res.out_dir}), "
          f"{len(res.kept)} kept, {len(res.removed)} removed (no longer registered)")
    print("broker reloaded" if res.reloaded else
          "no running broker started by smartcommunity found: the accounts apply at its next start")
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from security.broker import AccountError, revoke

    try:
        names, reloaded = revoke(settings, _registry(settings), args.names)
    except AccountError as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 2
    print(f"revoked {', '.join(names)}" + ("; broker reloaded: their connections are closed" if reloaded else
                                           "; no running broker found: applies at its next start"))
    return 0
