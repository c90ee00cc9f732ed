"""DingTalk custom robot (钉钉自定义机器人).

POST https://oapi.dingtalk.com/robot/send?access_token=TOKEN, with a signing secret ("加签"): the
query also carries `timestamp` (ms) and `sign` = URL-encoded base64 of HMAC-SHA256(secret,
f"{timestamp}\\n{secret}"). `msgtype: markdown`, and `at.atMobiles` (the mobiles must also appear
in the text as @mobile to be highlighted). Success is `errcode` 0 in a 200 answer (310000: bad
signature or keyword; 130101: sending too fast). Limit: 20 messages a minute, then blocked 10 min.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from typing import Any

from alerts.channels.base import HttpChannel, cut, robot_answer
from alerts.message import Message
from alerts.roster import Person

RATE_CODES = frozenset({130101, 660026})


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query value: urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


class DingTalkChannel(HttpChannel):
    kind = "dingtalk"
    address_field = "dingtalk"
    default_rate = (20, 60.0)
    default_blocked_s = 600.0
    max_bytes = 18000

    def url(self) -> str:
        base = self.target.url or ""
        if not self.target.secret:
            return base
        ts = int(time.time() * 1000)
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}timestamp={ts}&sign={sign(self.target.secret, ts)}"

    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> None:
        mobiles = [p.dingtalk for p in self.addressees(people) if p.dingtalk]
        text = message.markdown()
        if mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        body = {"msgtype": "markdown",
                "markdown": {"title": message.title, "text": cut(text, self.max_bytes)},
                "at": {"atMobiles": mobiles, "isAtAll": False}}
        robot_answer(self.post(body), RATE_CODES, "DingTalk")

# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = DingTalkChannel
