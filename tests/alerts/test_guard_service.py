"""The 6·13 guard end to end over the real broker: the running alert service, a hand close from the
dashboard's actions (refused at 62 %LEL, then overridden with a reason), and the leak still measured
reopening the SAME alert on `sc/alerts/...` (state back to active, `reopened` 1), the on-call staff
told again through the outbox."""

from __future__ import annotations

import orjson

from alerts.delivery import outbox_path
from alerts.store import AlertStore, store_path
from core.settings import Settings
from dashboard.actions import AlertActions
from tests.alerts.test_gas import alerts_for, gas_device, send, start_alerts  # noqa: F401 (start_alerts: fixture)
from tests.conftest import wait_until


def test_override_then_reopen_on_the_broker(settings: Settings, start_alerts, collector, publisher) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    dev = gas_device(settings, "yanhu")
    sub = collector("sc/alerts/#")
    start_alerts()
    send(publisher, dev, 62.0)
    assert sub.wait_for(lambda m: bool(alerts_for(sub, "gas_lel_high")), 10)
    aid = alerts_for(sub, "gas_lel_high")[0]["alert_id"]

    store = AlertStore(store_path(settings.data_path))  # the dashboard's side
    actions = AlertActions(store, settings)  # commands to the running service
    try:
        assert wait_until(lambda: (store.condition_of(aid) or (None, None, None))[2] is not None, 10)
        out = actions.resolve(aid, "值班员张", "处置结束")
        assert out.status == 409 and out.live is not None and out.live.value == 62.0
        out = actions.resolve(aid, "值班员张", "燃气公司已关总阀, 复测中", override=True)
        assert out.status == 200
        assert sub.wait_for(lambda m: any(a["alert_id"] == aid and a["state"] == "resolved"
                                          for a in alerts_for(sub, "gas_lel_high")), 10)
        def reopened() -> list[dict]:  # type: ignore[type-arg]
            return [a for a in alerts_for(sub, "gas_lel_high") if a["alert_id"] == aid and a.get("reopened") == 1]

        def still_leaking() -> bool:  # the device keeps reporting, as a real one does
            send(publisher, dev, 62.0)
            return sub.wait_for(lambda m: bool(reopened()), 0.7)

        assert wait_until(still_leaking, 20)
        assert reopened()[0]["state"] == "active" and "复燃" in reopened()[0]["message"]
        assert len({a["alert_id"] for a in alerts_for(sub, "gas_lel_high")}) == 1  # no new alert
        assert store.get(aid).reopened == 1  # type: ignore[union-attr]
        box = outbox_path(settings.data_path)
        assert wait_until(lambda: any(orjson.loads(x)["event"] == "reopened" and orjson.loads(x)["alert_id"] == aid
                                      for x in box.read_bytes().splitlines()), 10)
    finally:
        store.close()
