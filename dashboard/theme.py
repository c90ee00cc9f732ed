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

# Each person's notification preferences (dashboard/pages/settings.py; alerts/preferences.py decides).
PREF_CHANNEL: dict[str, str] = {"phone": "短信/电话", "wecom": "企业微信", "dingtalk": "钉钉", "email": "邮件"}
PREF_WORDS: dict[str, str] = {
    "heading": "通知设置",
    "intro": "选择您希望通过哪些渠道接收告警通知，并可设免打扰时段。免打扰时段内不向您发送黄色、橙色、蓝色告警；"
             "您未确认的告警仍按值班表逐级上报，由下一级值班人员处置。回到岗位后请在一张图和告警列表查看未解除的告警。",
    "red": "红色告警总会通过您在值班表中的全部渠道通知，不受这些设置影响，也不能关闭。",
    "person": "值班人员",
    "channels": "接收通知的渠道（至少保留一个）",
    "quiet": "免打扰时段（北京时间，可跨午夜，两项都留空为不设）",
    "to": "至",
    "save": "保存",
    "saved": "已保存（{by}）",
    "failed": "未能保存: {error}",
    "pick_channel": "请至少选择一个通知渠道",
    "unlinked": "当前账号未关联值班表中的人员。请管理员为您的账号关联值班人员后再设置。",
    "not_yours": "只能设置本人的通知；管理员可为他人设置",
    "none_yet": "尚未设置：按值班表的全部渠道通知，不设免打扰。",
    "current": "当前设置：{channels}；{quiet}。{by} 于 {at} 设置。",
    "no_quiet": "不设免打扰",
    "quiet_on": "免打扰 {words}",
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
