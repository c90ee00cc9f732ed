"""The `dashboard` verb: registered with its options, serving the app it builds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

import dashboard.cli as dash_cli
from tests.conftest import make_settings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    dash_cli.register(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_defaults_and_options() -> None:
    args = parse(["dashboard"])
    assert args.host == "127.0.0.1" and args.port is None and args.func is dash_cli.run
    args = parse(["dashboard", "--host", "0.0.0.0", "--port", "8123"])
    assert (args.host, args.port) == ("0.0.0.0", 8123)


def test_run_serves_on_the_configured_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(app: Any, host: str, port: int) -> None:
        seen.update(host=host, port=port, status=app.server.test_client().get("/").status_code)

    monkeypatch.setattr(dash_cli, "serve", fake_serve)
    s = make_settings(tmp_path / "var", http_port=8765, mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    assert dash_cli.run(parse(["dashboard"]), s) == 0
    assert seen == {"host": "127.0.0.1", "port": 8765, "status": 200}
