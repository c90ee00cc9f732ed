"""What the bridges share: their broker client and reading their YAML configuration."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import yaml

from core.mqtt import make_client
from core.settings import Settings

T = TypeVar("T")


def bridge_client(settings: Settings, name: str) -> mqtt.Client:
    """A bridge's broker client; a fresh client id each start (the bridge keeps no session)."""
    return make_client(settings, client_id=f"sc-{name}-{int(time.time() * 1000) % 10**9}")


def load_yaml(path: Path, parse: Callable[[Any, str], T], error: type[Exception]) -> T:
    """`parse` over the YAML file at `path`; an unreadable or non-YAML file is `error` naming it."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not YAML ({exc})") from None
    return parse(doc, str(path))
