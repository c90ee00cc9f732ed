"""The channels file: which robots, mail servers and webhooks notifications go to.

YAML, `SC_ALERTS_CHANNELS_FILE` (without it: the SMS/voice gateway at `SC_ALERTS_WEBHOOK_URL`, if set):

    channels:
      - id: street-wecom                 # names the target (and its cursor); letters, digits, - _
        kind: wecom                      # wecom | dingtalk | email | webhook | sms | mqtt
        url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...
        communities: [yanling, yanhu]    # optional: only these communities' alerts
        severities: [red, orange]        # optional: only these severities
        events: [raised, escalated]      # optional: raised, escalated, resolved, dispatch, test
        rate: {count: 20, per_s: 60}     # optional: the robot's limit (wecom/dingtalk: 20 a minute)
      - id: street-dingtalk
        kind: dingtalk
        url: https://oapi.dingtalk.com/robot/send?access_token=...
        secret: SEC...                   # the robot's signing secret (加签)
      - id: duty-mail
        kind: email
        url: smtp://mail.example.cn:587
        from: alarm@example.cn
        username: alarm                  # optional login
        password: ...
        starttls: auto                   # auto (when offered) | required

A file with errors is refused as a whole, each problem as `file:line: reason`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alerts.channels.base import Channel, Target
from alerts.configfile import ConfigError, line_of, load_yaml
from core.contract import COMMUNITIES
from core.plugins import modules_in
from core.severity import SEVERITIES

EVENTS = ("raised", "escalated", "reminder", "resolved", "dispatch", "test", "reopened", "dispatch_reopened")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_COMMON = {"id", "kind", "url", "secret", "communities", "severities", "events", "rate"}


def channel_kinds() -> dict[str, type[Channel]]:
    """Every Channel subclass of a module in alerts/channels/ (`CHANNEL`): a new kind is a new module."""
    import alerts.channels

    return {m.CHANNEL.kind: m.CHANNEL for m in modules_in(alerts.channels, having="CHANNEL")}


def _names(raw: Any, allowed: tuple[str, ...] | dict[str, str], what: str, line: int,
           problems: list[tuple[int, str]]) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        problems.append((line, f"{what} must be a non-empty list"))
        return None
    bad = [str(x) for x in raw if str(x) not in allowed]
    if bad:
        problems.append((line, f"unknown {what} {', '.join(bad)} (one of {', '.join(allowed)})"))
    return frozenset(str(x) for x in raw)


def parse_channels(path: Path) -> list[Target]:
    doc = load_yaml(path)
    problems: list[tuple[int, str]] = []
    for k in doc:
        if k != "channels":
            problems.append((line_of(doc, k), f"unknown key {k!r} (channels)"))
    raw = doc.get("channels")
    if not isinstance(raw, list):
        problems.append((line_of(doc, "channels"), "`channels` must be a list of targets"))
        raise ConfigError(path, problems)
    kinds = channel_kinds()
    out: list[Target] = []
    seen: set[str] = set()
    for i, c in enumerate(raw):
        ln = line_of(raw, i)
        if not isinstance(c, dict):
            problems.append((ln, "a channel is a mapping: id, kind, url ..."))
            continue
        tid, kind = str(c.get("id") or ""), str(c.get("kind") or "")
        if not _ID_RE.match(tid):
            problems.append((line_of(c, "id"), f"id {tid!r}: letters, digits, - and _ (it names the cursor file)"))
        elif tid in seen:
            problems.append((line_of(c, "id"), f"id {tid!r} is used twice"))
        seen.add(tid)
        if kind not in kinds:
            problems.append((line_of(c, "kind"), f"unknown kind {kind!r} ({', '.join(kinds)})"))
            continue
        for k in c:
            if k not in _COMMON and k not in kinds[kind].options:
                problems.append((line_of(c, k), f"unknown field {k!r} for a {kind} channel"))
        url = c.get("url")
        if not isinstance(url, str) or "://" not in url:
            problems.append((line_of(c, "url"), f"{tid}: `url` must be a URL"))
            continue
        if kind == "email" and not url.startswith(("smtp://", "smtps://")):
            problems.append((line_of(c, "url"), f"{tid}: an email url is smtp://host:port or smtps://host:port"))
        elif kind in ("wecom", "dingtalk", "webhook", "sms") and not url.startswith(("http://", "https://")):
            problems.append((line_of(c, "url"), f"{tid}: a {kind} url is http(s)://..."))
        elif kind == "mqtt" and not url.startswith(("mqtt://", "mqtts://")):
            problems.append((line_of(c, "url"), f"{tid}: an mqtt url is mqtt://host:port"))
        secret = c.get("secret")
        if secret is not None and not isinstance(secret, str):
            problems.append((line_of(c, "secret"), "secret must be text"))
        rate_count, window = None, 60.0
        if "rate" in c:
            r = c["rate"]
            if (not isinstance(r, dict) or not isinstance(r.get("count"), int) or isinstance(r.get("count"), bool)
                    or r["count"] < 0 or not isinstance(r.get("per_s", 60), int | float) or r.get("per_s", 60) <= 0):
                problems.append((line_of(c, "rate"), "rate is {count: N >= 0, per_s: seconds > 0} (count 0: no limit)"))
            else:
                rate_count, window = int(r["count"]), float(r.get("per_s", 60))
        target = Target(
            id=tid, kind=kind, url=url, secret=secret,
            communities=_names(c.get("communities"), COMMUNITIES, "communities", line_of(c, "communities"), problems),
            severities=_names(c.get("severities"), SEVERITIES, "severities", line_of(c, "severities"), problems),
            events=_names(c.get("events"), EVENTS, "events", line_of(c, "events"), problems),
            rate_count=rate_count, rate_window_s=window,
            options={k: c[k] for k in kinds[kind].options if k in c},
        )
        try:
            kinds[kind](target).close()  # the channel's own checks (e.g. the mail URL)
        except ValueError as exc:
            problems.append((ln, str(exc)))
            continue
        out.append(target)
    if problems:
        raise ConfigError(path, problems)
    return out


def default_targets(webhook_url: str | None) -> list[Target]:
    """Without a channels file: the SMS/voice gateway webhook of `SC_ALERTS_WEBHOOK_URL`, as ever."""
    return [Target(id="gateway", kind="sms", url=webhook_url)] if webhook_url else []


def make_channel(target: Target, timeout_s: float = 5.0) -> Channel:
    return channel_kinds()[target.kind](target, timeout_s)
