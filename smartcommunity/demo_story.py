"""【演示】The demo's simulated staff: one scripted walk-through of the demo gas leak, so that
`make demo` shows a whole closed loop in an alert's history. Run by `smartcommunity demo` only
(never by `up`); every name it signs with ends in （演示） and every note starts with 【演示】.

    the leak's red alert → acknowledged by the duty officer → dispatched to the 燃气公司 team →
    accepted → arrived → feedback (cause, action, text, one photo) → the alert clears by itself
    when the simulated leak ends → archived by the shift leader with a cause category.

It goes through the same code as people do (AlertActions, DispatchBook, archive), not around it.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from alerts.archive import archive
from alerts.dispatch import DispatchBook, Refused
from alerts.report import place_names
from alerts.store import AlertStore, store_path
from alerts.teams import load_teams
from core.contract import Alert
from core.settings import Settings
from core.timebase import iso, now_iso

log = logging.getLogger("smartcommunity.demo_story")

DUTY = "演示值班员（演示）"
LEADER = "街道值班长（演示）"
FITTER = "王师傅（演示）"
CAUSE = "燃气具使用不当"
ACTION = "关阀/停气"
FEEDBACK = "【演示】厨房灶具软管老化松脱，已关闭入户阀门并开窗通风，复测浓度回落至正常。建议住户更换软管。"
FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def demo_photo() -> bytes:
    """A small JPEG made on the spot, clearly marked as a demo picture."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (640, 480), (220, 226, 232))
    draw = ImageDraw.Draw(im)
    draw.rectangle((80, 260, 560, 420), fill=(150, 150, 150))  # a kitchen counter
    draw.ellipse((200, 200, 320, 280), fill=(60, 60, 60))  # the hob
    draw.line((320, 240, 520, 120), fill=(240, 160, 40), width=10)  # the hose
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(str(FONT), 36)
        text = "演示照片 DEMO"
    except OSError:
        font, text = ImageFont.load_default(), "DEMO PHOTO"
    draw.text((24, 20), text, fill=(200, 30, 30), font=font)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


class DemoStory:
    def __init__(self, settings: Settings, community: str, pace_s: float = 10.0,
                 stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.community = community
        self.pace_s = pace_s
        self.stop = stop or threading.Event()
        self.store = AlertStore(store_path(settings.data_path))
        names = functools.cache(lambda: place_names(settings))
        self.book = DispatchBook(self.store, settings, places=names)
        self.since = iso(time.time() - 60)

    def _wait(self, pred: Callable[[], object], poll_s: float = 1.0) -> object:
        while not self.stop.is_set():
            got = pred()
            if got:
                return got
            self.stop.wait(poll_s)
        return None

    def _pause(self) -> bool:
        return not self.stop.wait(self.pace_s)

    def _leak(self) -> Alert | None:
        for a in self.store.list(community=self.community, limit=50):
            if a.kind == "gas" and a.severity == "red" and a.started_at >= self.since:
                return a
        return None

    def run(self) -> str | None:
        """Walk one alert through; returns its id (None when stopped first)."""
        alert = self._wait(self._leak)
        if not isinstance(alert, Alert):
            return None
        aid = alert.alert_id
        log.info("【演示】demo story follows alert %s", aid)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("acknowledge", lambda: self._ack(aid)),
            ("dispatch", lambda: self._dispatch(aid)),
            ("accept", lambda: self.book.accept(self._did(aid), time.time(), FITTER)),
            ("arrive", lambda: self.book.arrive(self._did(aid), time.time())),
            ("feedback", lambda: self.book.feedback(self._did(aid), CAUSE, ACTION, FEEDBACK, [demo_photo()],
                                                    time.time())),
        ]
        for name, step in steps:
            if not self._pause():
                return None
            try:
                step()
                log.info("【演示】%s: %s", aid, name)
            except Refused as exc:  # a restarted story finds the step already done
                log.info("【演示】%s: %s skipped (%s)", aid, name, exc.message)
        if not self._wait(lambda: (a := self.store.get(aid)) is not None and a.state == "resolved", 2.0):
            return None
        if not self._pause():
            return None
        try:
            archive(self.store, aid, LEADER, CAUSE, "【演示】已核实：住户使用不当，软管已更换。", now_iso())
            log.info("【演示】%s: archived", aid)
        except Refused as exc:
            log.info("【演示】%s: archive skipped (%s)", aid, exc.message)
        return aid

    def _ack(self, aid: str) -> None:
        from dashboard.actions import AlertActions, Publisher

        pub = Publisher(self.settings)
        try:
            AlertActions(self.store, pub).acknowledge(aid, DUTY, "【演示】已电话联系住户，派燃气公司到场")
        finally:
            pub.close()

    def _dispatch(self, aid: str) -> None:
        if self.book.for_alert(aid):
            return
        teams = load_teams(self.settings.dispatch_teams_file)
        alert = self.store.get(aid)
        team = next(t for t in teams.teams.values()
                    if t.type == "燃气公司" and t.serves(alert.community if alert else None))
        now = time.time()
        d = self.book.create(aid, team, None, iso(now + 1800), DUTY, "【演示】厨房燃气报警，请速到场", now)
        log.info("【演示】dispatch %s sent (its field link went out in the message only)", d.dispatch_id)

    def _did(self, aid: str) -> str:
        return self.book.for_alert(aid)[0].dispatch_id

    def close(self) -> None:
        self.store.close()
