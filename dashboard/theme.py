"""Colours and labels of the wall display (dark theme, Chinese emergency warning colours)."""

from __future__ import annotations

from smartcommunity.contract import SEVERITY_LABEL, SEVERITY_RANK

# The four-colour risk scheme 红橙黄蓝 (GB/T emergency warning colours), tuned for a dark background.
SEVERITY_COLOR: dict[str, str] = {
    "red": "#ff3b30",
    "orange": "#ff8c1a",
    "yellow": "#ffd60a",
    "blue": "#2f8cff",
}
SEVERITY_NAME: dict[str, str] = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}

BG = "#070d18"
PANEL = "#0e1726"
GRID = "#1b2a40"
TEXT = "#e6edf7"
MUTED = "#8da2bf"

COMPOUND_NORMAL = "#2a4a75"  # a compound without open alerts
DEVICE_NORMAL = "#35c48a"  # green: reporting, no alert
ROAD = "#4a5d7a"
WATER = "#1b5384"
BUILDING = "#3d5f8c"
COMMUNITY_FILL: dict[str, str] = {  # faint tints telling the four communities apart
    "yanling": "#1b3b5a",
    "gongyixincun": "#213a4e",
    "lanshanjun": "#1c3448",
    "yanhu": "#203d57",
}
COMMUNITY_EDGE = "#7fb2e5"

KIND_LABEL: dict[str, str] = {"gas": "燃气", "water": "供水", "power": "用电", "camera": "视频"}
STATE_LABEL: dict[str, str] = {"active": "未处置", "acknowledged": "已确认", "resolved": "已解除"}

# Risk level 0..4 per compound / device (0 = no open alert), used as discrete colour codes.
RISK_LEVELS: tuple[str, ...] = ("normal", "blue", "yellow", "orange", "red")


def risk_colorscale(normal: str) -> list[list[float | str]]:
    """A stepped colour scale for integer codes 0..4 (cmin=0, cmax=4)."""
    colours = [normal] + [SEVERITY_COLOR[s] for s in RISK_LEVELS[1:]]
    scale: list[list[float | str]] = []
    for i, c in enumerate(colours):
        scale.append([i / 5, c])
        scale.append([(i + 1) / 5, c])
    return scale


def risk_code(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity or "", 0)


def severity_label(severity: str) -> str:
    return SEVERITY_LABEL.get(severity, severity)
