"""Check-ins and hazards (migration 0013) on each store backend."""

from __future__ import annotations

from alerts.store import open_store


def test_check_ins_and_hazards_on_each_backend(store_url: str) -> None:
    store = open_store(store_url)
    try:
        base = {"plan_id": "p1", "checkpoint": "北口阀井", "community": "yanhu", "by": "王师傅", "lon": 110.79,
                "lat": 32.64, "accuracy_m": 8.0, "distance_m": 4.2, "findings": None, "photos": [], "hazard_id": None}
        store.checkin_insert({**base, "checkin_id": "k-1", "at": "2026-12-02T01:00:00.000Z"})
        hazard = {"hazard_id": "h-1", "checkin_id": "k-2", "plan_id": "p1", "checkpoint": "北口阀井",
                  "community": "yanhu", "compound_id": None, "lon": 110.79, "lat": 32.64, "finding": "阀井积水",
                  "found_by": "王师傅", "found_at": "2026-12-03T01:00:00.000Z",
                  "deadline": "2026-12-10T01:00:00.000Z", "state": "open",
                  "photos": [{"file": "1.png", "stage": "found"}]}
        store.checkin_insert({**base, "checkin_id": "k-2", "at": "2026-12-03T01:00:00.000Z", "findings": "阀井积水",
                              "hazard_id": "h-1"}, hazard)
        got = store.checkins("2026-12-02T00:00:00.000Z")
        assert [r["checkin_id"] for r in got] == ["k-1", "k-2"] and got[0]["photos"] == []
        assert [r["checkin_id"] for r in store.checkins("2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z")] == ["k-1"]
        assert store.checkins("2026-12-01T00:00:00Z", plan_id="other") == []
        assert store.hazard("h-1")["photos"] == [{"file": "1.png", "stage": "found"}]  # type: ignore[index]
        assert [h["hazard_id"] for h in store.hazards(["open"], community="yanhu")] == ["h-1"]
        assert store.hazards(["open"], community="yanling") == []
        up = store.hazard_advance("h-1", ("open",), {"state": "rectified", "rectified_by": "刘经理",
                                                     "photos": [{"file": "r-1.png", "stage": "rectified"}]})
        assert up is not None and up["state"] == "rectified" and [p["stage"] for p in up["photos"]] == [
            "found", "rectified"]
        assert store.hazard_advance("h-1", ("open",), {"state": "rectified"}) is None  # not open any more
        assert store.hazards(found_before="2026-12-03T00:00:00Z") == []
    finally:
        store.close()
