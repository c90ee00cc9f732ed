"""The one small interface every channel implements (as Home Assistant's notify platforms subclass
one `BaseNotificationService`): which people it reaches, and `send(message, people)` that returns on
delivery and raises `DeliveryError` with the far end's own words otherwise.

A channel is configured as a *target* (one robot, one mailbox server, one webhook): see
alerts/channels/config.py. Delivery (outbox, cursors, retries, rate limits) is alerts/delivery.py;
a channel only knows how to say one thing once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from alerts.message import Message
from alerts.roster import Person


class DeliveryError(Exception):
    """Not delivered. `rate_limited`: the far end said "too fast" (wait `retry_after` if it said how long,
    else the channel's own block time or rate window)."""

    def __init__(self, text: str, retry_after: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.retry_after = retry_after
        self.rate_limited = rate_limited or retry_after is not None


@dataclass(frozen=True)
class Target:
    """One configured destination of one channel kind."""

    id: str
    kind: str
    url: str | None = None
    secret: str | None = None
    communities: frozenset[str] | None = None  # None: every community
    severities: frozenset[str] | None = None  # None: every severity
    events: frozenset[str] | None = None  # None: every event (raised, escalated, resolved, dispatch, test)
    rate_count: int | None = None  # at most this many messages ...
    rate_window_s: float = 60.0  # ... per this window; past it, a digest
    blocked_s: float = 0.0  # the far end blocks this long after its limit is passed (DingTalk: 600 s)
    options: Mapping[str, Any] = field(default_factory=dict)  # channel-specific (mail sender, login ...)


class Channel:
    kind: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()  # fields of its own a target of this kind may have
    address_field: ClassVar[str | None] = None  # Person field this channel reaches people by
    needs_address: ClassVar[bool] = False  # nothing to send unless someone has that address
    default_rate: ClassVar[tuple[int, float] | None] = None  # (messages, per seconds)
    default_blocked_s: ClassVar[float] = 0.0
    max_bytes: ClassVar[int] = 4000  # a message (and so a digest) is cut to this size

    def __init__(self, target: Target, timeout_s: float = 5.0) -> None:
        self.target = target
        self.timeout_s = timeout_s

    # -- who and what --------------------------------------------------------------------------
    def addressees(self, people: list[Person]) -> list[Person]:
        if self.address_field is None:
            return list(people)
        return [p for p in people if getattr(p, self.address_field)]

    def wants(self, event: str, community: str | None, severity: str | None, people: list[Person]) -> bool:
        t = self.target
        # A reopening (复燃) is a raise again: a target that takes raises takes it too.
        if t.events is not None and event not in t.events and not (event == "reopened" and "raised" in t.events):
            return False
        if event != "test":
            if t.communities is not None and community is not None and community not in t.communities:
                return False
            if t.severities is not None and severity is not None and severity not in t.severities:
                return False
        return not (self.needs_address and not self.addressees(people))

    def rate(self) -> tuple[int, float] | None:
        if self.target.rate_count is not None:
            return (self.target.rate_count, self.target.rate_window_s) if self.target.rate_count > 0 else None
        return self.default_rate

    def blocked_s(self) -> float:
        """How long to hold off after the far end said "too fast"."""
        rate = self.rate()
        return self.target.blocked_s or self.default_blocked_s or (rate[1] if rate else 60.0)

    # -- saying it -----------------------------------------------------------------------------
    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> str | None:
        """Deliver, or raise DeliveryError. May return a remark on a delivery that was only partly right."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def cut(text: str, max_bytes: int) -> str:
    """`text` within `max_bytes` of UTF-8, marked when cut."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    tail = "\n…(已截断)"
    return raw[: max_bytes - len(tail.encode())].decode(errors="ignore") + tail


class HttpChannel(Channel):
    """A channel that POSTs JSON; subclasses say what to post and what the answer means."""

    def __init__(self, target: Target, timeout_s: float = 5.0) -> None:
        super().__init__(target, timeout_s)
        if not target.url:
            raise ValueError(f"channel {target.id}: `url` is required")
        self.session = requests.Session()

    def url(self) -> str:
        return self.target.url or ""

    def post(self, body: dict[str, Any]) -> requests.Response:
        try:
            r = self.session.post(self.url(), json=body, timeout=self.timeout_s)
        except requests.Timeout:
            raise DeliveryError(f"no answer within {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if r.status_code == 429:
            after = r.headers.get("Retry-After")
            raise DeliveryError(f"HTTP 429 {r.text[:200]}", retry_after=float(after) if after and after.isdigit()
                                else None, rate_limited=True)
        if r.status_code >= 300:
            raise DeliveryError(f"HTTP {r.status_code}: {r.text[:300]}")
        return r

    def close(self) -> None:
        self.session.close()


def robot_answer(r: requests.Response, rate_codes: frozenset[int], who: str) -> None:
    """WeCom / DingTalk answer 200 with {"errcode": 0, "errmsg": "ok"}; anything else is a failure."""
    try:
        body = r.json()
    except ValueError:
        raise DeliveryError(f"{who}: answer is not JSON: {r.text[:200]!r}") from None
    if not isinstance(body, dict) or "errcode" not in body:
        raise DeliveryError(f"{who}: answer without errcode: {str(body)[:200]}")
    code = body.get("errcode")
    if code != 0:
        text = f"{who} errcode {code}: {body.get('errmsg', '')}"
        raise DeliveryError(text, rate_limited=code in rate_codes)
