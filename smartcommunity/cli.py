"""The `smartcommunity` command. Each part registers its own verbs; this file only wires them."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

from core.settings import Settings, load_settings

# Modules that expose `register(subparsers)`; each adds its verbs and sets `func(args, settings) -> int`.
VERB_MODULES = (
    "smartcommunity.services_cli",
    "smartcommunity.backup",
    "smartcommunity.edge",
    "smartcommunity.install",
    "smartcommunity.balancer",
    "ingest.cli",
    "alerts.cli",
    "dashboard.cli",
    "geodata.cli",
    "simulators.cli",
    "bridges.cli",
)

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartcommunity", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # What the system writes (alert outbox with names and phone numbers, stores, secrets, logs) is
    # private to its user: 0600 files, 0700 folders, inherited by the services and parts it starts.
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"smartcommunity: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
