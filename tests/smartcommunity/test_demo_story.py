"""【演示】The demo's scripted staff walk the demo leak's alert through the whole loop (and only
`demo` starts them, never `up`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alerts.store import AlertStore, store_path
from alerts.timeline import Event
from core.settings import Settings
from smartcommunity.demo_story import DemoStory
from smartcommunity.services_cli import DEMO_LEAK_COMMUNITY, PARTS, demo_parts
from tests.alerts.test_store import alert
from tests.conftest import make_settings


def test_the_demo_story_dispatches_feeds_back_and_archives_the_leak(tmp_path: Path) -> None:
    s: Settings = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9")
    store = AlertStore(store_path(s.data_path))
    stop = threading.Event()
    story = DemoStory(s, DEMO_LEAK_COMMUNITY, pace_s=0.05, stop=stop)
    result: list[str | None] = []
    th = threading.Thread(target=lambda: result.append(story.run()))
    th.start()
    try:
        time.sleep(0.3)  # the story waits for the leak
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        store.insert(alert("a-leak", community=DEMO_LEAK_COMMUNITY, compound_id="LSJ-02", started_at=now), "G-9")
        deadline = time.monotonic() + 30
        while not any(st.event == Event.FEEDBACK for st in store.timeline("a-leak")):
            assert time.monotonic() < deadline, store.timeline("a-leak")
            time.sleep(0.1)
        store.resolve("a-leak", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))  # the leak ends
        th.join(30)
        assert result == ["a-leak"]
    finally:
        stop.set()
        th.join(5)
        story.close()
    steps = store.timeline("a-leak")
    assert [st.event for st in steps] == [Event.RAISED, Event.ACKNOWLEDGED, Event.DISPATCHED, Event.NOTIFIED,
                                          Event.ACCEPTED, Event.ARRIVED, Event.FEEDBACK, Event.RESOLVED,
                                          Event.ARCHIVED]
    people = [st.actor for st in steps if st.actor != "system"]
    assert people and all("演示" in who for who in people)  # clearly labelled as the demo
    assert steps[2].data["team_type"] == "燃气公司"
    assert len(steps[6].data["photos"]) == 1
    store.close()


def test_only_the_demo_runs_the_story(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    assert "demo-story" in [name for name, _ in demo_parts(s, 45.0)]
    assert "demo-story" not in [name for name, _ in demo_parts(s, None)]  # --no-leak: nothing to walk through
    assert "demo-story" not in [name for name, _ in PARTS]  # `up`
