"""What the alert page draws of a dispatch: its progress, overdue marked, the feedback's cause, action,
text and photos from the signed-in route; refusals in staff's words."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from plotly.utils import PlotlyJSONEncoder

from alerts.dispatch import CAUSES, DispatchBook
from alerts.store import AlertStore
from alerts.teams import load_teams
from core.timebase import iso
from dashboard.dispatchview import dispatch_card, for_people, signature, team_options
from tests.alerts.test_dispatch import alert, jpeg
from tests.conftest import make_settings
from tests.dashboard.pagehelp import find, text_of


def tree_of(component: Any) -> Any:
    """A component as the browser receives it (plain JSON)."""
    return json.loads(json.dumps(component, cls=PlotlyJSONEncoder))


def test_a_dispatch_card_shows_progress_overdue_and_the_feedback(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    store = AlertStore(tmp_path / "a.sqlite")
    try:
        store.insert(alert("a-1", community="yanhu"), subject="G-1")
        book = DispatchBook(store, s)
        team = load_teams().teams["gas"]
        now = time.time()
        d = book.create("a-1", team, team.member("gas-wang"), iso(now + 600), "张三", "速到", now)
        late = replace(d, deadline=iso(now - 60))  # nobody accepted by its deadline
        card = text_of(tree_of(dispatch_card(late, can_act=True, now=now)))
        assert "待接单" in card and "已超时未接单" in card and "张三" in card
        assert "已超时" not in text_of(tree_of(dispatch_card(d, can_act=True, now=now)))
        assert signature([late], now) != signature([d], now)  # the page redraws when it runs late
        book.accept(d.dispatch_id, now + 1, "王师傅")
        book.arrive(d.dispatch_id, now + 2)
        done = book.feedback(d.dispatch_id, CAUSES[0], "关阀/停气", "已关阀", [jpeg(), jpeg()], now + 3)
        tree = tree_of(dispatch_card(done, can_act=False, now=now + 4))
        words = text_of(tree)
        assert "已反馈" in words and CAUSES[0] in words and "关阀/停气" in words and "已关阀" in words
        imgs = find(tree, lambda c: c["type"] == "Img")
        assert [i["props"]["src"] for i in imgs] == [f"/api/dispatches/{d.dispatch_id}/photos/{n}" for n in (1, 2)]
        links = find(tree, lambda c: c["type"] == "A")
        assert [a["props"]["href"] for a in links] == [i["props"]["src"] for i in imgs]  # full size on a click
        assert find(tree, lambda c: c["type"] == "Button") == []  # fed back: nothing to take back
    finally:
        store.close()


def test_teams_offered_are_those_serving_the_community() -> None:
    teams = load_teams()
    yanhu = {o["value"] for o in team_options(teams, "yanhu")}
    assert "gas" in yanhu and "pm-lanshanjun" not in yanhu
    assert "pm-lanshanjun" in {o["value"] for o in team_options(teams, "lanshanjun")}


def test_refusals_in_staff_words() -> None:
    got = for_people("refused: the approver must be a second person (批准人不能是搁置人本人)")
    assert got == "批准人不能是搁置人本人"
    got = for_people("refused: 设备 G-1 是燃气探测器 (gas device). 生命安全告警不能静默搁置: "
                     "需要另一名值班员/管理员批准 (--approved-by ACCOUNT, a second person's account)")
    assert got == "设备 G-1 是燃气探测器. 生命安全告警不能静默搁置: 需要另一名值班员/管理员批准"
    got = for_people('强制解除必须写明理由 (an override needs a non-empty "note": the reason)')
    assert got == "强制解除必须写明理由"
    assert for_people("尚有未完成的派单：燃气（待接单）。") == "尚有未完成的派单：燃气（待接单）。"
