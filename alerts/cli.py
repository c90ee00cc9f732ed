"""Verb: `alerts` runs the rule engine."""

from __future__ import annotations

import argparse

from core import procs
from core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="run the alert rule engine")
    p.set_defaults(func=run_alerts)


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.service import AlertService

    svc = AlertService(settings)
    procs.on_stop(svc.stop)
    svc.run_forever()
    return 0
