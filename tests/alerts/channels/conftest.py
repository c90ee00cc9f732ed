from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.channels.receivers import DingTalkRobot, MailServer, Webhook, WeComRobot, smtp_server


@pytest.fixture
def wecom() -> Iterator[WeComRobot]:
    r = WeComRobot()
    yield r
    r.close()


@pytest.fixture
def dingtalk() -> Iterator[DingTalkRobot]:
    r = DingTalkRobot()
    yield r
    r.close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    r = Webhook()
    yield r
    r.close()


@pytest.fixture
def mailserver(tmp_path: Path) -> Iterator[MailServer]:
    yield from smtp_server(tmp_path, starttls=True, refuse={"nobody@example.cn"})


def sample_alert(**over: object):  # type: ignore[no-untyped-def]
    from core.contract import Alert

    d = dict(alert_id="a-0123456789abcdef", rule="gas_lel_high", severity="red", state="active",
             community="yanling", compound_id="YL-01", device_id="G-000001", kind="gas", metric="lel_pct",
             value=31.25, threshold=25, lon=110.7819513, lat=32.6511363, started_at="2026-11-29T03:04:05Z",
             updated_at="2026-11-29T03:04:05Z",
             message="可燃气体浓度超限; 200 米内: 岩岭小学(学校)等 2 家单位, 约 830 户",
             nearby={"radius_m": 200.0, "units": [{"id": "U1", "name": "岩岭小学", "category": "学校",
                                                   "distance_m": 40}],
                     "units_count": 2, "shops_count": 3, "households": 830},
             escalation_tier=1)
    d.update(over)
    return Alert(**d)  # type: ignore[arg-type]


@pytest.fixture
def message():  # type: ignore[no-untyped-def]
    from alerts.message import Places, compose
    from core.registry import bundled_registry_path, load_registry

    reg = load_registry(bundled_registry_path())
    a = sample_alert()
    return compose(a, "raised", Places(reg.get).of(a.community, a.compound_id, a.device_id),
                   public_url="http://dash.example:8050")
