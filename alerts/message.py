"""What a notification says: places, not ids.

"[一级·红色预警] 燃气告警 — 岩岭社区 半山尚小区 1栋 管井", the reading and its threshold with units,
the surroundings once, the time in Beijing, and a link to the alert's page on the dashboard.
Every channel renders the same `Message` (markdown for the robots, plain text for SMS and e-mail,
JSON for webhooks), so a test message (`smartcommunity notify test`) reads exactly like an alert.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from alerts.context import resources_line, summary
from alerts.rules import title_of
from core.contract import COMMUNITIES, KIND_LABEL, METRICS, Alert, Device
from core.severity import LEVEL, NAME
from core.timebase import beijing, parse_iso

log = logging.getLogger(__name__)

EVENT_HEAD = {"raised": "新告警", "escalated": "逐级上报", "resolved": "已解除", "test": "测试消息",
              "dispatch": "派单", "reminder": "再次提醒: 尚无人确认", "reopened": "复燃·重新告警"}
# The surroundings line the engine appends to an alert's message ("...; 200 米内: ..."): the message
# names the surroundings itself, once, from `alert.nearby`.
_SURROUNDINGS_RE = re.compile(r";\s*\d+(?:\.\d+)? 米内[:：].*$")


@dataclass(frozen=True)
class Place:
    community: str  # 岩岭社区
    compound: str | None = None  # 半山尚小区
    building: str | None = None  # 1栋
    install: str | None = None  # 管井

    def line(self) -> str:
        return " ".join(x for x in (self.community, self.compound, self.building, self.install) if x)


@dataclass(frozen=True)
class Message:
    """One notification, channel-neutral."""

    title: str  # 【一级·红色预警】燃气告警
    place: str  # 岩岭社区 半山尚小区 1栋 管井
    lines: list[str] = field(default_factory=list)  # what, value/threshold, surroundings, time ...
    link: str | None = None
    severity: str | None = None
    alert_id: str | None = None
    event: str | None = None  # what happened: an outbox event (raised, reminder, reopened ...); None: a digest

    def plain(self) -> str:
        body = [self.title, self.place, *self.lines]
        if self.link:
            body.append(f"详情: {self.link}")
        return "\n".join(x for x in body if x)

    def markdown(self) -> str:
        body = [f"### {self.title}", f"**{self.place}**" if self.place else "", *self.lines]
        if self.link:
            body.append(f"[查看详情]({self.link})")
        return "\n\n".join(x for x in body if x)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Message:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def _layer_names() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(community -> name, place id -> name, building id -> name) from the GIS layers as they are now:
    `geodata import` changes a layer file, load_layers() sees its new mtime, and the names follow."""
    from geodata.layers import load_layers

    return _names_of(load_layers())


@functools.lru_cache(maxsize=2)
def _names_of(layers: Any) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    comms = {str(c): str(n) for c, n in zip(layers.communities["community"], layers.communities["name"], strict=True)}
    places = {pid: p.name for pid, p in layers.places.items()}
    b = layers.buildings
    buildings = {str(i): str(n) for i, n in zip(b["building_id"], b["name"], strict=True)}
    return comms, places, buildings


def warm_up() -> None:
    """Load the place names ahead of the first alert (the GIS layers take a moment)."""
    try:
        _layer_names()
    except Exception:
        log.exception("GIS layers unavailable")


def place_label(*ids: str) -> str:
    """Community, compound or building ids as the names people use ("蓝山郡社区", "半山尚小区 1栋"),
    each id kept where the layers do not name it."""
    try:
        comms, places, buildings = _layer_names()
    except Exception:
        comms, places, buildings = {}, {}, {}
    return " ".join(comms.get(i) or COMMUNITIES.get(i) or places.get(i) or buildings.get(i) or i for i in ids if i)


class Places:
    """Names for a device's place: community and compound from the layers, building and install
    place from the registry's `building_id` / `install` properties."""

    def __init__(self, device: Callable[[str], Device | None] | None = None) -> None:
        self._device = device

    def of(self, community: str, compound_id: str | None, device_id: str | None) -> Place:
        try:
            comms, places, buildings = _layer_names()
        except Exception:  # a message without the compound's name beats no message
            log.exception("GIS layers unavailable: naming places by community only")
            comms, places, buildings = {}, {}, {}
        dev = self._device(device_id) if self._device and device_id else None
        extra = dev.extra if dev is not None else {}
        bid = extra.get("building_id")
        return Place(
            community=comms.get(community) or COMMUNITIES.get(community, community),
            compound=places.get(compound_id or "") or None,
            building=buildings.get(str(bid)) if bid else None,
            install=str(extra["install"]) if extra.get("install") else None,
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return str(v)


def reading(alert: Alert) -> str | None:
    """"当前值 30.5 %LEL，阈值 25 %LEL" for a numeric metric; None when there is no such reading."""
    spec = METRICS.get(alert.kind, {}).get(alert.metric or "")
    if spec is None or spec.is_bool or not isinstance(alert.value, int | float) or isinstance(alert.value, bool):
        return None
    thr = alert.threshold
    text = f"当前值 {_fmt(alert.value)} {spec.unit}"
    if isinstance(thr, int | float) and not isinstance(thr, bool):
        text += f"，阈值 {_fmt(thr)} {spec.unit}"
    return text


def description(alert: Alert) -> str:
    """The rule's message without any surroundings line the engine appended to it."""
    return _SURROUNDINGS_RE.sub("", alert.message or "").strip()


def alert_link(public_url: str | None, alert_id: str) -> str | None:
    return f"{public_url.rstrip('/')}/alerts/{alert_id}" if public_url else None


def compose(alert: Alert, event: str, place: Place, *, tier: int = 1, public_url: str | None = None,
            note: str | None = None) -> Message:
    sev = alert.severity
    head = EVENT_HEAD.get(event, event)
    if event == "escalated":
        head = f"逐级上报(第{tier}级): 尚无人确认"
    title = f"【{LEVEL.get(sev, sev)}·{NAME.get(sev, sev)}预警】{KIND_LABEL.get(alert.kind, alert.kind)}告警 {head}"
    desc = description(alert)
    what = title_of(alert.rule)
    lines = [desc if not what or what == alert.rule or what in desc else f"{what}：{desc}"]
    r = reading(alert)
    unit = METRICS.get(alert.kind, {}).get(alert.metric or "")
    if r and not (unit and unit.unit in desc):  # the rule's own text may already say it, with units
        lines.append(r)
    if alert.nearby:
        s = summary(alert.nearby)
        if s:
            lines.append(f"周边 {s}")
        if event != "resolved":  # the all-clear needs no valve
            lines.append(resources_line(alert.nearby, alert.kind))
    when = parse_iso(alert.resolved_at if event == "resolved" else alert.started_at)
    if when is not None:
        label = "解除时间" if event == "resolved" else "发生时间"
        lines.append(f"{label}: {beijing(when).strftime('%m-%d %H:%M:%S')} (北京时间)")
    if note:
        lines.append(note)
    lines.append(f"设备编号: {alert.device_id}")
    return Message(title=title, place=place.line(), lines=[x for x in lines if x],
                   link=alert_link(public_url, alert.alert_id), severity=sev, alert_id=alert.alert_id,
                   event=event)


def digest(messages: list[Message], public_url: str | None = None) -> Message:
    """Many notifications as one message, for a robot past its rate limit: one line each, worst first."""
    from core.severity import rank

    ordered = sorted(messages, key=lambda m: -rank(m.severity))
    lines = [f"{i}. {m.title} — {m.place}" + (f" [详情]({m.link})" if m.link else "")
             for i, m in enumerate(ordered, 1)]
    worst = ordered[0].severity if ordered else None
    return Message(title=f"【汇总】{len(messages)} 条告警通知 (发送频率受限, 合并发送)", place="",
                   lines=lines, link=f"{public_url.rstrip('/')}/alerts" if public_url else None,
                   severity=worst)
