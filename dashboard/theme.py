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
# The phone's patrol page (dashboard/pages/patrol.py) and the hazard list (dashboard/pages/hazards.py).
PATROL_NAV = "巡检"
PATROL_WORDS: dict[str, str] = {
    "heading": "巡检打卡",
    "mine": "{who} 的巡检计划",
    "all": "全部巡检计划",
    "none": "未配置巡检计划。",
    "overdue": "已逾期 {n} 轮",
    "due": "本轮待巡 · {due} 前完成",
    "done": "本轮已完成",
    "not_started": "{day} 起执行",
    "who": "巡检人",
    "every": "周期",
    "form": "到达打卡",
    "plan": "巡检计划",
    "point": "打卡点",
    "point_hint": "请选择打卡点",
    "plan_hint": "请选择巡检计划",
    "findings": "发现的问题（无则不填；填写即登记为隐患）",
    "findings_hint": "例如：阀井盖板破损、调压箱锈蚀、管道上方违章占压",
    "days": "隐患整改期限（天）",
    "photos": "现场照片（最多 3 张，JPEG/PNG/WebP）",
    "photo_pick": "拍照或选择照片",
    "photos_n": "已选 {n} 张照片",
    "go": "定位并打卡",
    "locating": "正在定位…",
    "no_position": "未能取得定位：{why}。请允许浏览器使用位置信息后重试。",
    "geo_none": "此浏览器不支持定位",
    "geo_denied": "未获准使用位置信息",
    "geo_failed": "定位失败",
    "ok": "已打卡：{plan} · {point}（距打卡点 {d:.0f} 米，{at}）",
    "hazard": "已登记隐患，整改期限 {deadline}",
    "refused": "未能打卡：{why}",
    "pick": "请先选择巡检计划和打卡点。",
    "hazards_link": "隐患整改清单",
}
HAZARD_NAV = "隐患"
HAZARD_WORDS: dict[str, str] = {
    "heading": "隐患整改",
    "intro": "巡检发现的隐患按整改期限跟踪至销号：待整改 → 已整改（附整改照片）→ 销号。",
    "empty": "没有符合条件的隐患。",
    "all": "全部",
    "overdue": "已超期",
    "deadline": "整改期限",
    "found": "发现",
    "rectified": "整改",
    "closed": "销号",
    "note": "整改说明或销号意见",
    "photos": "整改照片",
    "rectify": "整改完成",
    "close": "销号",
    "photo": "照片{n}",
    "done": "已更新：{state}",
    "refused": "未能更新：{why}",
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
