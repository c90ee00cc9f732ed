"""The severity scale 红橙黄蓝: the one home for its names, ranks, labels and colours.

The contract's four levels follow the Chinese emergency warning scheme (red = 一级 / critical ...
blue = 四级 / notice). Every part that ranks, labels or paints a severity imports it from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"


SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)  # worst first
NORMAL = "normal"  # no open alert: not a severity, but a place on the map has to be painted something

RANK: dict[str, int] = {"red": 4, "orange": 3, "yellow": 2, "blue": 1}
LEVEL: dict[str, str] = {"red": "一级", "orange": "二级", "yellow": "三级", "blue": "四级"}  # contract §4
NAME: dict[str, str] = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}
SHORT: dict[str, str] = {"red": "红", "orange": "橙", "yellow": "黄", "blue": "蓝", NORMAL: "正常"}
# GB/T emergency warning colours, tuned for the dark wall display; NORMAL is the green of a quiet place.
COLOUR: dict[str, str] = {
    "red": "#ff3b30",
    "orange": "#ff8c1a",
    "yellow": "#ffd60a",
    "blue": "#2f8cff",
    NORMAL: "#35c48a",
}


def rank(severity: str | None) -> int:
    """4 = red ... 1 = blue; 0 for no alert or an unknown word."""
    return RANK.get(severity or "", 0)


def label(severity: str) -> str:
    """一级 / 二级 / 三级 / 四级."""
    return LEVEL.get(severity, severity)


def worst(severities: Iterable[str | None]) -> str:
    """The highest severity present ('red' > 'orange' > 'yellow' > 'blue'); 'normal' if none.

    None and "" mean "no alert"; any other unknown string is an error, not silently green.
    """
    best, best_rank = NORMAL, 0
    for s in severities:
        if not s or s == NORMAL:
            continue
        r = RANK.get(s)
        if r is None:
            raise ValueError(f"unknown severity {s!r}")
        if r > best_rank:
            best, best_rank = s, r
    return best


def rollup(items: Iterable[tuple[str, str | None]], keys: Iterable[str] = ()) -> dict[str, str]:
    """(key, severity) pairs → key → worst level; every key in `keys` present (default 'normal').

    Keys are compound ids for the compound map, community slugs for the overview: the caller chooses.
    """
    out: dict[str, str] = dict.fromkeys(keys, NORMAL)
    for key, sev in items:
        out[key] = worst((out.get(key), sev))
    return out


@dataclass(frozen=True, slots=True)
class RiskStyle:
    level: str
    label: str  # 红 / 橙 / 黄 / 蓝 / 正常
    colour: str
    rank: int  # 4 = red ... 1 = blue, 0 = normal


RISK_LEVELS: tuple[str, ...] = (*SEVERITIES, NORMAL)
RISK_STYLES: dict[str, RiskStyle] = {k: RiskStyle(k, SHORT[k], COLOUR[k], RANK.get(k, 0)) for k in RISK_LEVELS}


def css_variables() -> str:
    """`:root { --sev-red: ... }` so that style sheets paint with these colours without restating them."""
    return ":root{" + "".join(f"--sev-{k}:{c};" for k, c in COLOUR.items()) + "}"
