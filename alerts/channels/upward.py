"""Upward reporting: red and orange incidents, their updates and their closure, to the district or
city platform as signed JSON.

A street platform reports its serious incidents upward (区/市城市生命线平台); this channel is that
report, one POST per outbox entry, delivered exactly once per target by the outbox (alerts/delivery.py:
a cursor per target, retried until answered 2xx). A crash between the far end's 2xx and our cursor
write can send an entry twice: every report carries an `event_id` that is the same on every retry of
that entry and different for any other, so the platform keeps each report once.

The body (`schema: "sc.incident/1"`) and its signature:

    POST <url>
    Content-Type: application/json; charset=utf-8
    X-SC-Timestamp: 1795000000            (Unix seconds when sent)
    X-SC-Event-Id: 3f5c…                  (the body's event_id)
    X-SC-Signature: sha256=<hex>          HMAC-SHA256(secret, "<timestamp>.<raw body bytes>")

    {"schema": "sc.incident/1", "event_id": "3f5c…", "event": "raised" | "escalated" | "reopened" | "resolved" | "test",
     "source": "<this street's id on the platform>", "sent_at": "2026-12-03T20:31:07.000Z",
     "incident": {<the alert as contract §4 publishes it, with level 一级..四级 and place names>},
     "title": "…", "place": "…", "text": "<the staff message, plain text>", "link": "…" | null}

The receiver checks the signature over the exact bytes received, refuses a timestamp more than
`MAX_SKEW_S` from its clock (a captured request cannot be replayed later) and an event id it has
already kept within that window (nor replayed sooner): `verify()` below is that check, for the
platform's side and for our tests.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar

import orjson

from alerts.channels.base import DeliveryError, HttpChannel, Target
from alerts.message import Message
from alerts.roster import Person
from core.contract import COMMUNITIES
from core.severity import LEVEL
from core.timebase import now_iso

SCHEMA = "sc.incident/1"
REPORTED = frozenset({"red", "orange"})  # what a street reports upward, unless the target says otherwise
MAX_SKEW_S = 300.0
MIN_SECRET = 16


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def event_id(message: Message, alert: Mapping[str, Any] | None) -> str:
    """The same for every retry of one outbox entry (its content does not change), else different."""
    raw = orjson.dumps({"m": message.as_json(), "a": alert}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:32]


class Refused(Exception):
    """Why a receiver refuses a report (HTTP 401 for a bad signature or time, 409 for a replay)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify(secret: str, headers: Mapping[str, str], body: bytes, seen: MutableMapping[str, float],
           now: float | None = None) -> dict[str, Any]:
    """The platform's check of one report: the parsed body, or `Refused`. `seen` maps event ids kept
    to when (entries older than the skew window are dropped here, so it stays small)."""
    now = time.time() if now is None else now
    ts, sig = headers.get("X-SC-Timestamp", ""), headers.get("X-SC-Signature", "")
    if not ts.isdigit() or not hmac.compare_digest(sign(secret, ts, body), sig):
        raise Refused(401, "bad signature")
    if abs(now - int(ts)) > MAX_SKEW_S:
        raise Refused(401, "timestamp outside the allowed window")
    doc = orjson.loads(body)
    eid = str(doc.get("event_id") or "")
    if not eid or eid != headers.get("X-SC-Event-Id"):
        raise Refused(401, "event id missing or not the signed one")
    for k in [k for k, at in seen.items() if now - at > 2 * MAX_SKEW_S]:
        del seen[k]
    if eid in seen:
        raise Refused(409, "already received")
    seen[eid] = now
    return dict(doc)


class UpwardChannel(HttpChannel):
    kind = "upward"
    options: ClassVar[frozenset[str]] = frozenset({"source"})
    max_bytes = 64000

    def __init__(self, target: Target, timeout_s: float = 5.0) -> None:
        super().__init__(target, timeout_s)
        if not self.url().startswith(("http://", "https://")):
            raise ValueError(f"channel {target.id}: an upward url is http(s)://...")
        if not target.secret or len(target.secret) < MIN_SECRET:
            raise ValueError(f"channel {target.id}: an upward channel needs a `secret` of {MIN_SECRET}+ characters "
                             "(the HMAC key agreed with the platform)")

    def wants(self, event: str, community: str | None, severity: str | None, people: list[Person]) -> bool:
        if event in ("dispatch", "dispatch_reopened", "reminder"):  # work orders and nags stay in the street
            return False
        if event != "test" and self.target.severities is None and severity not in REPORTED:
            return False
        return super().wants(event, community, severity, people)

    def report(self, message: Message, alert: Mapping[str, Any] | None) -> dict[str, Any]:
        incident = dict(alert or {})
        if incident:
            incident["level"] = LEVEL.get(str(incident.get("severity")), "")
            incident["community_name"] = COMMUNITIES.get(str(incident.get("community")), "")
        return {"schema": SCHEMA, "event_id": event_id(message, alert), "event": message.event or "digest",
                "source": str(self.target.options.get("source") or ""), "sent_at": now_iso(),
                "incident": incident, "title": message.title, "place": message.place, "text": message.plain(),
                "link": message.link}

    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> None:
        doc = self.report(message, alert)
        body = orjson.dumps(doc)
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "X-SC-Timestamp": ts,
                   "X-SC-Event-Id": doc["event_id"], "X-SC-Signature": sign(self.target.secret or "", ts, body)}
        try:
            r = self.session.post(self.url(), data=body, headers=headers, timeout=self.timeout_s)
        except Exception as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if r.status_code == 409:  # the platform already has this report: delivered (a retry after a crash)
            return
        if r.status_code >= 300:
            raise DeliveryError(f"HTTP {r.status_code}: {r.text[:300]}", rate_limited=r.status_code == 429)


# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = UpwardChannel
