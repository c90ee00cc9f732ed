"""An engine on a real store with a controlled clock, for the trigger tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.engine import Engine
from alerts.rules import load_ruleset
from alerts.store import AlertStore
from core.contract import Alert
from tests.alerts.test_engine import Clock


class Rig:
    def __init__(self, tmp_path: Path, rules_text: str | None = None) -> None:
        self.clock = Clock()
        self.store = AlertStore(tmp_path / "a.sqlite")
        self.published: list[Alert] = []
        path = None
        if rules_text is not None:
            path = tmp_path / "rules.yaml"
            path.write_text(rules_text, encoding="utf-8")
        self.engine = Engine(load_ruleset(path), self.store, self.published.append, 60, 0, clock=self.clock)

    def of(self, rule: str) -> list[Alert]:
        return [a for a in self.published if a.rule == rule]

    def ids(self, rule: str) -> set[str]:
        return {a.alert_id for a in self.of(rule)}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.store.close()
