"""Messages name places, not ids; the surroundings once; severity in Chinese; units; a link."""

from __future__ import annotations

from pathlib import Path

import orjson

from alerts.message import Places, compose, digest
from core.registry import bundled_registry_path, load_registry
from tests.alerts.channels.conftest import sample_alert

PLACES = Places(load_registry(bundled_registry_path()).get)


def test_an_alert_reads_as_places_with_units_and_a_link() -> None:
    a = sample_alert()
    m = compose(a, "raised", PLACES.of(a.community, a.compound_id, a.device_id), public_url="http://10.0.0.5:8050/")
    text = m.plain()
    assert m.title == "【一级·红色预警】燃气告警 新告警"
    assert m.place == "岩岭社区 半山尚小区 1栋 管井"
    assert "当前值 31.25 %LEL，阈值 25 %LEL" in text
    assert "发生时间: 11-29 11:04:05 (北京时间)" in text  # 03:04:05Z in Beijing
    assert text.count("200 米内") == 1 and "周边 200 米内: 岩岭小学(学校)等 2 家单位, 约 830 户" in text
    assert "详情: http://10.0.0.5:8050/alerts/a-0123456789abcdef" in text
    assert "yanling/" not in text and "(yanling" not in text


def test_the_surroundings_once_even_when_the_engine_repeated_them() -> None:
    line = "200 米内: 岩岭小学(学校)等 2 家单位, 约 830 户"
    a = sample_alert(message=f"可燃气体浓度超限; {line}; {line}")
    text = compose(a, "raised", PLACES.of(a.community, a.compound_id, a.device_id)).plain()
    assert text.count("米内") == 1


def test_escalation_resolution_and_other_kinds() -> None:
    a = sample_alert(severity="orange", kind="power", metric="temp_c", value=82.0, threshold=70,
                     device_id="P-000001", message="线缆/断路器温度 82.0 °C ≥ 70 °C", nearby=None,
                     resolved_at="2026-11-29T04:00:00Z")
    place = PLACES.of(a.community, a.compound_id, a.device_id)
    assert place.install == "配电箱"
    esc = compose(a, "escalated", place, tier=2)
    assert esc.title == "【二级·橙色预警】用电告警 逐级上报(第2级): 尚无人确认"
    assert "线缆/断路器温度 82.0 °C ≥ 70 °C" in esc.plain() and "米内" not in esc.plain()
    assert "当前值" not in esc.plain()  # the rule's text says it with units already: not twice
    no_units = compose(sample_alert(severity="orange", kind="power", metric="temp_c", value=82.0, threshold=70,
                                    message="线缆温度过高", nearby=None), "raised", place)
    assert "当前值 82 °C，阈值 70 °C" in no_units.plain()
    assert "解除时间: 11-29 12:00:00" in compose(a, "resolved", place).plain()
    leak = sample_alert(kind="water", metric="leak", value=True, threshold=True, device_id="nope",
                        compound_id="NOPE", community="yanhu", severity="yellow", message="漏水", nearby=None)
    m = compose(leak, "raised", PLACES.of(leak.community, leak.compound_id, leak.device_id))
    assert m.place == "艳湖社区" and "当前值" not in m.plain() and m.title.startswith("【三级·黄色预警】供水告警")


def test_digest_lists_every_one_worst_first() -> None:
    ms = [compose(sample_alert(alert_id=f"a-{i}", severity=s), "raised", PLACES.of("yanling", "YL-01", None),
                  public_url="http://d") for i, s in enumerate(["yellow", "red", "blue"])]
    d = digest(ms, "http://d")
    assert d.title.startswith("【汇总】3 条告警通知") and d.severity == "red"
    assert ["一级" in d.lines[0], "三级" in d.lines[1], "四级" in d.lines[2]] == [True, True, True]
    assert all(f"http://d/alerts/a-{i}" in "\n".join(d.lines) for i in range(3))


def test_engine_to_outbox_names_the_place(tmp_path: Path) -> None:
    """Through the real engine, rules, surroundings and roster: the text in the outbox."""
    from alerts.context import Surroundings
    from alerts.engine import Engine
    from alerts.notify import Escalation, Notifier
    from alerts.roster import load_roster
    from alerts.rules import load_rules
    from alerts.store import AlertStore
    from core.validation import Telemetry

    reg = load_registry(bundled_registry_path())
    dev = reg["G-000001"]
    store = AlertStore(tmp_path / "a.sqlite")
    outbox = tmp_path / "outbox.jsonl"
    esc = Escalation(load_roster(), Notifier(outbox, Places(reg.get), "http://dash"))
    engine = Engine(load_rules(), store, lambda a: None, 60, 0, surroundings=Surroundings(200).around,
                    escalation=esc)
    engine.handle(Telemetry(dev, 1_795_000_000_000, None, {"lel_pct": 40.0}))
    [note] = [orjson.loads(x) for x in outbox.read_bytes().splitlines()]
    assert note["to"][0]["name"] == "岩岭社区值班员" and note["to"][0]["wecom"]
    text = note["text"]
    assert "岩岭社区 半山尚小区 1栋 管井" in text and "燃气浓度 40.0 %LEL ≥ 25 %LEL" in text
    assert text.count("200 米内") == 1 and f"http://dash/alerts/{note['alert_id']}" in text
    store.close()


def test_place_names_follow_a_layer_import_without_a_restart(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from geodata import BUNDLED_DIR

    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    a = sample_alert()
    assert PLACES.of(a.community, a.compound_id, a.device_id).compound == "半山尚小区"
    doc = orjson.loads((BUNDLED_DIR / "compounds.geojson").read_bytes())
    for f in doc["features"]:
        if f["properties"]["compound_id"] == a.compound_id:
            f["properties"]["name"] = "半山尚苑"  # the survey office's name for it
    override = tmp_path / "var" / "geodata" / "compounds.geojson"
    override.parent.mkdir(parents=True)
    override.write_bytes(orjson.dumps(doc))  # what `geodata import --layer compounds` leaves
    assert PLACES.of(a.community, a.compound_id, a.device_id).compound == "半山尚苑"


def test_the_rule_title_leads_the_message_and_steps_read_in_chinese() -> None:
    from alerts.timeline import Step

    a = sample_alert(rule="power_leakage_repeat", message="10 分钟内剩余电流 3 次超过 150 mA(间歇性接地故障)")
    text = compose(a, "raised", PLACES.of(a.community, a.compound_id, a.device_id)).plain()
    assert "间歇性漏电：10 分钟内剩余电流" in text and "power_leakage_repeat" not in text

    def words(event: str, **data: object) -> str:
        return Step(1, "a-1", "2026-11-29T03:04:05Z", event, "system", None, dict(data)).words()

    assert words("notified", person="张三", channel="ops-wecom", kind="wecom", delivered=True) == "张三 企业微信 已送达"
    assert words("notified", person="李四", channel="gateway", kind="sms", delivered=False,
                 error="HTTP 502") == "李四 短信/语音 发送失败"
    assert words("notified", dispatch_id="d-1", to=["王五"], channel="outbox", delivered="queued") \
        == "王五 派单消息 已排队发送"
    assert words("escalated", tier=2, to=["赵六", "钱七"]) == "第 2 级 赵六、钱七"
