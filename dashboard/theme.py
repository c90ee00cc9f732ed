"""Colours and labels of the wall display (dark theme, Chinese emergency warning colours)."""

from __future__ import annotations

import json
from typing import Any

from core.contract import KIND_LABEL
from core.severity import COLOUR as SEVERITY_COLOR
from core.severity import NORMAL, css_variables
from core.severity import label as severity_label
from core.severity import rank as risk_code
from core.timebase import TZ_NAME

__all__ = ["KIND_LABEL", "SEVERITY_COLOR", "risk_code", "severity_label"]  # they live in core (severity, contract)

BG = "#070d18"
PANEL = "#0e1726"
GRID = "#1b2a40"
TEXT = "#e6edf7"
MUTED = "#8da2bf"

COMPOUND_NORMAL = "#2a4a75"  # a compound without open alerts
DEVICE_NORMAL = SEVERITY_COLOR[NORMAL]  # green: reporting, no alert
DEVICE_OFFLINE = "#8a94a6"  # grey: offline or silent
DEVICE_CLUSTER = "#2f7d6d"  # a bubble of devices (all reporting; one in alert or offline is drawn on top)
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

# Emergency resources on the map (categories of geodata.resources): small dots apart from the
# severity colours, the units' violet and the shops' light blue; the size tells a point from a base.
RESOURCE_STYLE: dict[str, tuple[str, int]] = {  # category -> (colour, marker size px)
    "gas_valve": ("#ff4fd8", 7),
    "water_valve": ("#00e5ff", 7),
    "hydrant": ("#eceff4", 5),
    "team": ("#d9a760", 12),
    "shelter": ("#a8ff60", 12),
    "aed": ("#ff9ec7", 8),
}

# The navigation of every page (the Dash shell and the served report); `/report` is a plain page.
NAV: tuple[tuple[str, str], ...] = (("一张图", "/"), ("告警列表", "/alerts"), ("屏蔽维护", "/shelves"),
                                    ("大屏", "/wall"), ("月报", "/report"))
DASH_PAGES_NAV = frozenset({"/", "/alerts", "/shelves", "/wall"})
STATE_LABEL: dict[str, str] = {"active": "未处置", "acknowledged": "已确认", "resolved": "已解除"}
# A muted alert (alerts/inhibit.py): its tag, the fact's name on its page, and what muting means; the
# link to its cause reads "因「疑似停电」抑制" (alerts.inhibit.WORDS with the cause's rule title).
INHIBIT_TAG = "已抑制"
INHIBIT_FACT = "抑制"
INHIBIT_TIP = "原因告警未解除期间不通知; 原因解除后仍未恢复的, 自动发布并通知"
# The clock's status light (/api/health "clock"): its label and what its tooltip says when it warns.
CLOCK_LABEL = "时钟"
CLOCK_NTP_UNSYNCED = "本机时钟未与授时服务器 (NTP) 同步"
CLOCK_DRIFT = "设备时间与本机时钟平均相差 {s:+.1f} 秒 (近 {n} 条读数)"
DATA_DIR_SHARE = "数据目录已占磁盘 {pct:.1f}% (超过设定的 {max:g}%)"  # the 数据盘 light when it warns

# The demo's notification inbox (dashboard/pages/inbox.py): what each recipient would have got.
INBOX_NAV = "通知收件箱"
INBOX_CHANNEL: dict[str, str] = {"wecom": "企业微信群", "dingtalk": "钉钉群", "sms": "短信"}
INBOX_WORDS: dict[str, str] = {
    "heading": "通知收件箱（演示）",
    "intro": "演示系统不向外发送通知: 值班群的企业微信、钉钉机器人消息和发给值班人员的短信都收在这里, 最新的在前。",
    "all": "全部",
    "group": "值班群",
    "empty": "还没有通知。告警产生后, 通知会在几秒内出现在这里。",
    "count": "共 {n} 条",
    "more": "（仅显示最新 {n} 条）",
    "mention": "被提醒的手机",
    "about": "关于告警",
    "alert": "告警详情",
    "viewer": "此页含值班人员的电话号码, 仅限值班人员登录后查看。",
}

# A scoped person (dashboard/scope.py): the title bar's scope, and the page of a thing outside it.
SCOPE_WORDS: dict[str, str] = {
    "scope": "可见范围",
    "not_found": "未找到",
    "not_found_text": "没有这个页面。",
    "back": "返回一张图",
}


def page_head() -> str:
    """What every page's <head> carries from the one homes: the severity colours as CSS variables
    (`var(--sev-red)` in assets/*.css) and the time zone the wall clock shows (`window.scTime`)."""
    tz = json.dumps({"timeZone": TZ_NAME})
    return f"<style>{css_variables()}</style><script>window.scTime={tz};</script>"


def install_page_head(app: Any) -> None:
    """Put `page_head()` into a Dash app's index page, before its style sheets."""
    if "window.scTime" not in app.index_string:
        app.index_string = app.index_string.replace("{%css%}", page_head() + "{%css%}", 1)
