"""Fixtures of the bridge tests: a gas device of the registry, its OneNET mapping, and the OneNET
bridge served by waitress on a free port against the session's real broker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from bridges.onenet import OneNetBridge, StreamMap, serve
from core.contract import Device
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from smartcommunity.services import free_port

TOKEN = "5ec78dbca0db5a7e49b603fe"
ONENET_DEV = "523698741"  # a OneNET device id (numeric, as the platform numbers them)


@pytest.fixture
def gas(settings: Settings) -> Device:
    reg = load_registry(ensure_registry(settings))
    return sorted((d for d in reg.values() if d.kind == "gas"), key=lambda d: d.device_id)[0]


@pytest.fixture
def mapping(gas: Device) -> StreamMap:
    return StreamMap({ONENET_DEV: gas.device_id}, {"CH4": "lel_pct", "CO": "co_ppm"})


class Running:
    def __init__(self, bridge: OneNetBridge, url: str) -> None:
        self.bridge, self.url = bridge, url

    def post(self, body: bytes) -> requests.Response:
        return requests.post(self.url, data=body, headers={"Content-Type": "application/json"}, timeout=20)


@pytest.fixture
def run_bridge(settings: Settings) -> Iterator[Callable[..., Running]]:
    made: list[tuple[Any, OneNetBridge]] = []

    def start(mapping: StreamMap | None = None, aeskey: str | None = None, settings: Settings = settings,
              wait_s: float = 10.0, **kw: Any) -> Running:
        bridge = OneNetBridge(settings, TOKEN, aeskey, mapping, **kw)
        bridge.start(wait_s=wait_s)
        port = free_port()
        srv = serve(bridge, "127.0.0.1", port)
        threading.Thread(target=srv.run, daemon=True).start()
        made.append((srv, bridge))
        return Running(bridge, f"http://127.0.0.1:{port}/onenet")

    yield start
    for srv, bridge in made:
        srv.close()
        bridge.close()
