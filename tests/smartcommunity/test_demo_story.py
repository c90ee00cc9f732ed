"""【演示】The demo's scripted staff walk the demo leak's alert through the whole loop (and only
`demo` starts them, never `up`)."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import orjson

from alerts.store import AlertStore, store_path
from alerts.timeline import Event
from core.settings import Settings
from core.timebase import epoch
from dashboard.audit import audit_path
from smartcommunity.demo_story import DemoStory, provision_story, story_tokens_path
from smartcommunity.services import RunningService
from smartcommunity.services_cli import DEMO_LEAK_COMMUNITY, PARTS, demo_parts
from tests.alerts.test_store import alert
from tests.conftest import make_settings
from tests.security.web.conftest import LiveDashboard


def test_the_demo_story_dispatches_feeds_back_and_archives_the_leak(tmp_path: Path, broker: RunningService) -> None:
    live = LiveDashboard(tmp_path / "var", broker.url.port)  # the staff act through its /api
    s: Settings = make_settings(tmp_path / "var", mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}", http_port=live.port)
    try:
        tokens = provision_story(s)
        live.start()
        assert stat.S_IMODE(story_tokens_path(s).stat().st_mode) == 0o600
        store = AlertStore(store_path(s.data_path))
        stop = threading.Event()
        story = DemoStory(s, DEMO_LEAK_COMMUNITY, pace_s=0.05, stop=stop, base_url=live.url, after_s=1.5)
        result: list[str | None] = []
        th = threading.Thread(target=lambda: result.append(story.run()))
        try:
            th.start()
            time.sleep(0.3)  # the story waits for the leak
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            store.insert(alert("a-leak", community=DEMO_LEAK_COMMUNITY, compound_id="LSJ-02", started_at=now), "G-9")
            deadline = time.monotonic() + 60
            while not any(st.event == Event.FEEDBACK for st in store.timeline("a-leak")):
                assert time.monotonic() < deadline, (store.timeline("a-leak"), live.log.read_text()[-2000:])
                time.sleep(0.1)
            store.resolve("a-leak", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))  # the leak ends
            th.join(60)
            assert result == ["a-leak"]
        finally:
            stop.set()
            th.join(5)
            story.close()
    finally:
        live.stop()  # also when the start or the story fails
    steps = store.timeline("a-leak")
    assert [st.event for st in steps] == [Event.RAISED, Event.ACKNOWLEDGED, Event.DISPATCHED, Event.NOTIFIED,
                                          Event.ACCEPTED, Event.ARRIVED, Event.FEEDBACK, Event.RESOLVED,
                                          Event.ARCHIVED]
    people = [st.actor for st in steps if st.actor != "system"]
    assert people and all("演示" in who for who in people)  # clearly labelled as the demo
    assert steps[2].data["team_type"] == "燃气公司"
    assert epoch(steps[1].at) - epoch(steps[0].at) >= 1.5  # a visitor had the time to act first
    assert len(steps[6].data["photos"]) == 1
    store.close()
    # Signed in as themselves: the scripted accounts' tokens, recorded under those accounts.
    audit = [orjson.loads(x) for x in audit_path(s.data_path).read_bytes().splitlines() if x.strip()]
    acts = {e["action"]: e for e in audit if e["target"] == "a-leak"}
    assert acts["alert.acknowledge"]["actor"] == "demo-duty" and acts["alert.acknowledge"]["detail"]["auth"] == "token"
    assert acts["alert.archive"]["actor"] == "demo-leader" and acts["alert.archive"]["outcome"] == "ok"
    log_text = live.log.read_text(errors="replace")
    assert not any(t in log_text for t in tokens.values()) and "Traceback" not in log_text


def test_only_the_demo_runs_the_story(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    assert "demo-story" in [name for name, _ in demo_parts(s, 45.0)]
    assert "demo-story" not in [name for name, _ in demo_parts(s, None)]  # --no-leak: nothing to walk through
    assert "demo-story" not in [name for name, _ in PARTS]  # `up`
    story = dict(demo_parts(s, 45.0))["demo-story"]
    assert story[story.index("--after") + 1] == "180"  # a visitor has three minutes to act first
    off = make_settings(tmp_path / "var", demo_responders_after_s=0)
    assert "demo-story" not in [name for name, _ in demo_parts(off, 45.0)]  # 0: no simulated staff
