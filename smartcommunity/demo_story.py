"""【演示】The demo's simulated staff: one scripted walk-through of the demo gas leak, so that
`make demo` shows a whole closed loop in an alert's history. Run by `smartcommunity demo` only
(never by `up`); every name it signs with ends in （演示） and every note starts with 【演示】.

    the leak's red alert → acknowledged by the duty officer → dispatched to the 燃气公司 team →
    accepted → arrived → feedback (cause, action, text, one photo) → the alert clears by itself
    when the simulated leak ends → archived by the shift leader with a cause category.

It acts as people do, over HTTP and signed in: the duty officer and the shift leader are scripted
staff accounts (`demo-duty`, `demo-leader`, operators) that call the dashboard's `/api` with their
personal tokens (`provision_story`: made by `demo`, kept 0600 under the secrets folder), so their
steps are recorded under those accounts like anyone's; the fitter opens the dispatch's field link
as a phone would (the link lives only in memory, as in the message).
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.dispatch import DispatchBook
from alerts.report import place_names
from alerts.store import open_store
from alerts.teams import load_teams
from core.contract import Alert
from core.settings import Settings
from core.timebase import iso

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


STORY_ACCOUNTS = (("demo-duty", DUTY), ("demo-leader", LEADER))  # scripted staff, operators
HTTP_TIMEOUT_S = 30.0


def story_tokens_path(settings: Settings) -> Path:
    return settings.secrets_path / "demo-story" / "tokens.json"


def provision_story(settings: Settings) -> dict[str, str]:
    """The scripted staff's accounts (made if missing; a random password nobody keeps: they never sign
    in by password) and a fresh personal token each (older ones revoked), written 0600."""
    import secrets

    import orjson

    from core.secrets import private_dir, write_private
    from core.staff import open_accounts
    from dashboard.sessions import open_sessions

    accounts = open_accounts(settings)
    store = open_sessions(settings)
    tokens: dict[str, str] = {}
    try:
        for username, name in STORY_ACCOUNTS:
            if accounts.get(username) is None:
                accounts.add(username, name, secrets.token_urlsafe(32), role="operator")
            store.revoke_token(username)
            tokens[username] = store.new_token(username, "demo-story")[1]
    finally:
        store.close()
    path = story_tokens_path(settings)
    private_dir(path.parent)
    write_private(path, orjson.dumps(tokens))
    return tokens


class StepRefused(Exception):
    """The dashboard refused a step (an HTTP error): e.g. a restarted story finds it already done."""


class DemoStory:
    def __init__(self, settings: Settings, community: str, pace_s: float = 10.0,
                 stop: threading.Event | None = None, base_url: str | None = None, after_s: float = 0.0) -> None:
        import orjson
        import requests

        self.settings = settings
        self.community = community
        self.pace_s = pace_s
        self.after_s = after_s  # a visitor acts first: the scripted staff wait this long after the alert
        self.stop = stop or threading.Event()
        self.store = open_store(settings)
        names = functools.cache(lambda: place_names(settings))
        self.book = DispatchBook(self.store, settings, places=names)
        self.since = iso(time.time() - 60)
        self.base = (base_url or f"http://127.0.0.1:{settings.http_port}").rstrip("/")
        self.tokens: dict[str, str] = orjson.loads(story_tokens_path(settings).read_bytes())
        self.http = requests.Session()
        self.link: str | None = None  # the field link, as the fitter's phone got it

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

    def _post(self, path: str, who: str | None = None, **kw: Any) -> Any:
        """POST to the dashboard as `who` (a scripted account's token) or as the field page (no token),
        retrying while the dashboard is not up yet; an HTTP error is StepRefused."""
        import requests

        headers = {"Origin": self.base}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        url = path if path.startswith("http") else self.base + path
        for _ in range(30):
            try:
                r = self.http.post(url, headers=headers, timeout=HTTP_TIMEOUT_S, allow_redirects=False, **kw)
            except requests.ConnectionError:
                if self.stop.wait(2.0):
                    raise StepRefused("stopped") from None
                continue
            if r.status_code >= 400:
                raise StepRefused(f"{r.status_code} {r.text[:200]}")
            return r
        raise StepRefused(f"the dashboard at {self.base} did not answer")

    def run(self) -> str | None:
        """Walk one alert through; returns its id (None when stopped first)."""
        alert = self._wait(self._leak)
        if not isinstance(alert, Alert):
            return None
        aid = alert.alert_id
        log.info("【演示】demo story follows alert %s; the scripted staff act in %g s (what a visitor has done "
                 "by then, they leave)", aid, self.after_s)
        if self.stop.wait(self.after_s):
            return None
        steps: list[tuple[str, Callable[[], object]]] = [
            ("acknowledge", lambda: self._acknowledge(aid)),
            ("dispatch", lambda: self._dispatch(aid)),
            ("accept", lambda: self._field("accept", data={"name": FITTER})),
            ("arrive", lambda: self._field("arrive", data={})),
            ("feedback", lambda: self._feedback(aid)),
        ]
        for name, step in steps:
            if not self._pause():
                return None
            try:
                step()
                log.info("【演示】%s: %s", aid, name)
            except StepRefused as exc:  # a restarted story finds the step already done
                log.info("【演示】%s: %s skipped (%s)", aid, name, exc)
        if not self._wait(lambda: (a := self.store.get(aid)) is not None and a.state == "resolved", 2.0):
            return None
        if not self._pause():
            return None
        try:
            self._post(f"/api/alerts/{aid}/archive", "demo-leader",
                       json={"cause": CAUSE, "note": "【演示】已核实：住户使用不当，软管已更换。"})
            log.info("【演示】%s: archived", aid)
        except StepRefused as exc:
            log.info("【演示】%s: archive skipped (%s)", aid, exc)
        return aid

    def _acknowledge(self, aid: str) -> None:
        alert = self.store.get(aid)
        if alert is not None and alert.acked_by:  # a visitor acknowledged it first: theirs stands
            raise StepRefused(f"already acknowledged by {alert.acked_by}")
        self._post(f"/api/alerts/{aid}/ack", "demo-duty", json={"note": "【演示】已电话联系住户，派燃气公司到场"})

    def _dispatch(self, aid: str) -> None:
        if self.book.for_alert(aid):
            raise StepRefused("already dispatched")
        teams = load_teams(self.settings.dispatch_teams_file)
        alert = self.store.get(aid)
        team = next(t for t in teams.teams.values()
                    if t.type == "燃气公司" and t.serves(alert.community if alert else None))
        r = self._post(f"/api/alerts/{aid}/dispatch", "demo-duty",
                       json={"team": team.team_id, "deadline_min": 30, "note": "【演示】厨房燃气报警，请速到场"})
        self.link = str(r.json()["link"])
        log.info("【演示】dispatch %s sent (its field link went out in the message only)", r.json()["dispatch_id"])

    def _feedback(self, aid: str) -> None:
        """处置完毕 only once the detector reads normal again (the close guard): the fitter waits on site,
        re-measures, and says so with the reading, never while the gas is still measured."""
        self._wait(lambda: self.book.live_reading(aid) is None, 2.0)
        got = self.store.condition_of(aid)
        last = (got[2] or {}).get("last_value") if got else None
        text = FEEDBACK if last is None else f"{FEEDBACK}（现场复测 {last} %LEL）"
        self._field("submit-feedback", data={"cause": CAUSE, "action": ACTION, "text": text,
                                             **({"remeasure": str(last)} if last is not None else {})},
                    files={"photo": ("demo.jpg", demo_photo(), "image/jpeg")})

    def _field(self, button: str, **kw: Any) -> None:
        """Press a button of the field page, as the fitter's phone does: the form's own action URL."""
        import re

        if self.link is None:
            raise StepRefused("no field link (the story restarted after the dispatch)")
        path = "/d/" + self.link.split("/d/", 1)[1]
        page = self.http.get(self.base + path, timeout=HTTP_TIMEOUT_S).text
        for form in re.findall(r"<form[^>]*>.*?</form>", page, re.S):
            if f'id="{button}"' in form:
                action = re.search(r'action="([^"]+)"', form)
                if action:
                    self._post(action.group(1).replace("&amp;", "&"), **kw)
                    return
        raise StepRefused(f"the field page shows no {button} button")

    def close(self) -> None:
        self.http.close()
        self.store.close()
