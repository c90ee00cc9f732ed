"""WeCom group robot (企业微信群机器人).

POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY with `msgtype: markdown` for the
alert; markdown cannot @ by mobile, so when someone is to be reached a second `text` message with
`mentioned_mobile_list` follows. Success is `errcode` 0 in a 200 answer. Limit: 20 messages a
minute per robot (errcode 45009 past it). Markdown content: at most 4096 bytes.
"""

from __future__ import annotations

from typing import Any

from alerts.channels.base import DeliveryError, HttpChannel, cut, robot_answer
from alerts.message import Message
from alerts.roster import Person

RATE_CODES = frozenset({45009})


class WeComChannel(HttpChannel):
    kind = "wecom"
    address_field = "wecom"
    default_rate = (20, 60.0)
    max_bytes = 4096

    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> str | None:
        r = self.post({"msgtype": "markdown", "markdown": {"content": cut(message.markdown(), self.max_bytes)}})
        robot_answer(r, RATE_CODES, "WeCom")
        mobiles = [p.wecom for p in self.addressees(people) if p.wecom]
        if mobiles:
            names = "、".join(p.name for p in self.addressees(people))
            r = self.post({"msgtype": "text", "text": {
                "content": cut(f"{message.title} {message.place}\n提醒: {names}", 2048),
                "mentioned_mobile_list": mobiles}})
            try:
                robot_answer(r, RATE_CODES, "WeCom")
            except DeliveryError as exc:
                # The alert itself is in the group: sending it again would double it. Delivered, with a remark.
                return f"alert posted, but the @-mention failed: {exc.text}"
        return None

    def messages_per_send(self, people: list[Person]) -> int:
        return 2 if self.addressees(people) else 1

# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = WeComChannel
