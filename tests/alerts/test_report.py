"""The period report: numbers from a known set of alerts, computed here independently (numpy's
median and inverted-CDF percentile over the times this test chose), the month taken in Beijing
time, and `smartcommunity report --month` writing the CSV and the HTML (with plotly inline)."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from alerts.archive import archive, pending
from alerts.dispatch import CAUSES, DispatchBook, Refused
from alerts.report import Period, build_report, to_csv
from alerts.store import open_store
from alerts.teams import load_teams
from alerts.timeline import Event
from core.contract import COMMUNITIES
from core.settings import Settings
from core.timebase import BEIJING, beijing, iso
from smartcommunity.cli import main
from tests.alerts.test_store import alert
from tests.conftest import make_settings

NOV_START = datetime(2026, 11, 1, tzinfo=BEIJING).timestamp()
DEC_START = datetime(2026, 12, 1, tzinfo=BEIJING).timestamp()
KINDS = ("gas", "water", "power", "camera")
SEVS = ("red", "orange", "yellow", "blue")


def build_known_store(s: Settings, seed: int = 7) -> list[dict]:
    """~80 alerts in and around 2026-11 (Beijing), with chosen times to ack / arrive / resolve."""
    rng = random.Random(seed)
    store = open_store(s)
    book = DispatchBook(store, s)
    teams = load_teams()
    specs: list[dict] = []
    starts = [NOV_START - 60, NOV_START, NOV_START + 30, DEC_START - 1, DEC_START]  # the month's edges
    starts += [NOV_START + rng.uniform(0, DEC_START - NOV_START) for _ in range(75)]
    for i, t0 in enumerate(starts):
        comm = rng.choice(list(COMMUNITIES))
        spec = {
            "id": f"a-{i:03d}", "t0": t0, "community": comm, "kind": rng.choice(KINDS), "severity": rng.choice(SEVS),
            "compound": f"{comm[:2].upper()}-{rng.randint(1, 4):02d}", "device": f"D-{rng.randint(1, 12):03d}",
            "ack": rng.choice([None, rng.uniform(5, 900)]),
            "arrive": rng.choice([None, rng.uniform(300, 3600)]),
            "resolve": rng.choice([None, rng.uniform(600, 20000)]),
        }
        specs.append(spec)
        store.insert(alert(spec["id"], community=comm, compound_id=spec["compound"], device_id=spec["device"],
                           kind=spec["kind"], severity=spec["severity"], started_at=iso(t0)), subject=spec["id"])
        if spec["ack"] is not None:
            store.acknowledge(spec["id"], "值班员", None, iso(t0 + spec["ack"]))
            store.acknowledge(spec["id"], "值班长", None, iso(t0 + spec["ack"] + 50))  # the first one counts
        if spec["arrive"] is not None:
            team = next(t for t in teams.teams.values() if t.serves(comm))
            for k, extra in enumerate((0.0, 120.0)):  # two teams; the first arrival counts
                d = book.create(spec["id"], team, None, iso(t0 + 7200), "值班员", None, t0 + 1 + k)
                book.accept(d.dispatch_id, t0 + 2 + k)
                book.arrive(d.dispatch_id, t0 + spec["arrive"] + extra)
                if k == 0:  # the first team feeds back; the second stays open (arrived)
                    book.feedback(d.dispatch_id, CAUSES[0], "维修处置", "", [], t0 + spec["arrive"] + 60)
                else:
                    spec.setdefault("open_at", []).append(t0 + 1 + k)
        if rng.random() < 0.3:  # an open dispatch, never accepted
            team = next(t for t in teams.teams.values() if t.serves(comm))
            book.create(spec["id"], team, None, iso(t0 + 3600), "值班员", None, t0 + 3)
            spec.setdefault("open_at", []).append(t0 + 3)
        if spec["resolve"] is not None:
            store.resolve(spec["id"], iso(t0 + spec["resolve"]), by=None)
    store.close()
    return specs


def expected(specs: list[dict], community: str | None) -> dict:
    inside = [sp for sp in specs if NOV_START <= sp["t0"] < DEC_START and community in (None, sp["community"])]

    def stat(key: str) -> tuple[int, float | None, float | None]:
        v = np.array([sp[key] for sp in inside if sp[key] is not None])
        if not len(v):
            return 0, None, None
        return len(v), float(np.median(v)), float(np.percentile(v, 90, method="inverted_cdf"))

    devices = Counter(sp["device"] for sp in inside)
    return {
        "total": len(inside),
        "kind_sev": Counter((sp["kind"], sp["severity"]) for sp in inside),
        "ack": stat("ack"), "arrive": stat("arrive"), "resolve": stat("resolve"),
        "compounds": Counter(sp["compound"] for sp in inside),
        "top": sorted(((d, n) for d, n in devices.items() if n >= 2), key=lambda x: (-x[1], x[0]))[:10],
        # dispatches MADE in the period and not fed back (one made at 1 s past the month's end is not)
        "open": sum(1 for sp in specs if community in (None, sp["community"])
                    for t in sp.get("open_at", []) if NOV_START <= t < DEC_START),
    }


def rows_of(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")  # Excel opens the UTF-8 as UTF-8
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def check_csv(rows: list[dict[str, str]], community: str, exp: dict) -> None:
    mine = [r for r in rows if r["community"] == community]
    get = {(r["section"], r["key"], r["detail"]): r["value"] for r in mine}
    assert int(get[("alerts_total", "", get_name(community))]) == exp["total"]
    ks = {(r["key"], r["detail"]): int(r["value"]) for r in mine if r["section"] == "alerts_by_kind_severity"}
    assert ks == dict(exp["kind_sev"])
    for m in ("ack", "arrive", "resolve"):
        n, med, p90 = exp[m]
        assert int(get[(f"time_to_{m}_s", "n", "")]) == n
        for key, want in (("median", med), ("p90", p90)):
            got = get[(f"time_to_{m}_s", key, "")]
            if want is None:
                assert got == ""
            else:
                # the CSV rounds to 0.1 s; the times are stored with millisecond precision
                assert abs(float(got) - want) <= 0.051, (m, key, got, want)
    comp = {r["key"]: int(r["value"]) for r in mine if r["section"] == "alerts_by_compound"}
    assert comp == dict(exp["compounds"])
    top = [(r["key"], int(r["value"])) for r in mine if r["section"] == "top_repeat_devices"]
    assert top == exp["top"]
    assert len([r for r in mine if r["section"] == "open_dispatches"]) == exp["open"]


def get_name(community: str) -> str:
    return "全街道" if community == "*" else COMMUNITIES[community]


def test_the_report_numbers_match_an_independent_computation(tmp_path: Path, store_url: str) -> None:
    s = make_settings(tmp_path / "var", store_url=store_url)
    specs = build_known_store(s)
    exp_all = expected(specs, None)
    assert exp_all["total"] == len(specs) - 2  # the two alerts just outside the Beijing month
    assert exp_all["ack"][0] > 10 and exp_all["arrive"][0] > 10 and exp_all["resolve"][0] > 10
    store = open_store(s)
    try:
        rep = build_report(store, Period.month("2026-11"), now=DEC_START + 10)
        rows = rows_of(to_csv(rep))
        check_csv(rows, "*", exp_all)
        for c in COMMUNITIES:
            check_csv(rows, c, expected(specs, c))
        one = build_report(store, Period.month("2026-11"), "yanhu", now=DEC_START + 10)
        assert set(one.sections) == {"yanhu", "*"}
        check_csv(rows_of(to_csv(one)), "yanhu", expected(specs, "yanhu"))
        # Any period: the first day only.
        day = build_report(store, Period.days("2026-11-01", "2026-11-01"), now=DEC_START)
        assert day.sections["*"].total == sum(1 for sp in specs if NOV_START <= sp["t0"] < NOV_START + 86400)
    finally:
        store.close()


def test_smartcommunity_report_writes_csv_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    s = make_settings(tmp_path / "var")
    specs = build_known_store(s, seed=11)
    for k in [k for k in list(__import__("os").environ) if k.startswith("SC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SC_DATA_DIR", str(s.data_path))
    out = tmp_path / "out"
    assert main(["report", "--month", "2026-11", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    csv_path, html_path = out / "report-2026-11.csv", out / "report-2026-11.html"
    assert printed == [str(html_path), str(csv_path)]
    check_csv(rows_of(csv_path.read_text(encoding="utf-8")), "*", expected(specs, None))
    page = html_path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in page  # the library itself is inline: the file opens with no network
    rest = page.replace(get_plotlyjs(), "")
    assert rest.count("Plotly.newPlot") == 4  # the four charts
    assert "cdn.plot.ly" not in rest and "<script src=" not in rest  # no CDN
    assert "蓝山郡社区" in page and "响应时间" in page
    assert main(["report", "--month", "2026-13"]) == 2
    assert main(["report", "--out", str(out)]) == 0  # default: this month, in Beijing time
    this_month = beijing().strftime("%Y-%m")
    assert (out / f"report-{this_month}.csv").is_file()
    assert main(["report", "--from", "2026-11-05"]) == 2


def test_archive_closes_out_red_and_orange_alerts_including_self_resolved(store_url: str) -> None:
    store = open_store(store_url)
    try:
        for aid, sev in (("a-red", "red"), ("a-orange", "orange"), ("a-yellow", "yellow"), ("a-open", "red")):
            store.insert(alert(aid, severity=sev), subject=aid)
        for aid in ("a-red", "a-orange", "a-yellow"):
            store.resolve(aid, "2026-11-25T04:00:00.000Z", by=None)  # the condition cleared by itself
        assert [a.alert_id for a in pending(store)] == ["a-red", "a-orange"]  # oldest first, same start: rowid
        with pytest.raises(Refused) as still_open:
            archive(store, "a-open", "张三", CAUSES[0], None, "2026-11-25T05:00:00.000Z")
        assert still_open.value.status == 409
        with pytest.raises(Refused) as bad:
            archive(store, "a-red", "张三", "随便写的原因", None, "2026-11-25T05:00:00.000Z")
        assert bad.value.status == 400
        with pytest.raises(Refused):
            archive(store, "a-red", "", CAUSES[0], None, "2026-11-25T05:00:00.000Z")
        assert [st.event for st in store.timeline("a-red")] == [Event.RAISED, Event.RESOLVED]

        import threading

        results: list[str] = []

        def close_out(k: int) -> None:
            try:
                archive(store, "a-red", f"值班员{k}", CAUSES[5], "误报", "2026-11-25T05:00:00.000Z")
                results.append("ok")
            except Refused as exc:
                results.append(str(exc.status))

        threads = [threading.Thread(target=close_out, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == ["409"] * 7 + ["ok"]
        steps = store.timeline("a-red")
        assert [st.event for st in steps] == [Event.RAISED, Event.RESOLVED, Event.ARCHIVED]
        assert steps[2].data == {"cause": CAUSES[5]} and steps[2].note == "误报"
        assert [a.alert_id for a in pending(store)] == ["a-orange"]
    finally:
        store.close()


def test_places_are_named_by_their_names_not_ids(tmp_path: Path) -> None:
    """The report, the dispatch message and the field page name a device's building as people do."""
    import re

    from alerts.dispatch import place_of
    from alerts.report import place_names
    from core.contract import Alert
    from tests.conftest import make_settings

    compounds, devices = place_names(make_settings(tmp_path))
    with_building = [w for w in devices.values() if "栋" in w]
    assert with_building, "the bundled registry places devices in buildings"
    assert not [w for w in devices.values() if re.search(r"[A-Z]{2}-\d{2}", w)], "an id where a name belongs"
    dev_id, where = next((d, w) for d, w in devices.items() if "栋" in w)
    a = Alert(alert_id="a-1", rule="gas_lel_high", severity="red", state="active", community="yanhu",
              compound_id="YH-01", device_id=dev_id, kind="gas", metric="lel_pct", value=30.0, threshold=25.0,
              lon=110.8, lat=32.6, started_at="2026-11-29T03:04:05Z", updated_at="2026-11-29T03:04:05Z",
              message="燃气浓度 30.0 %LEL ≥ 25 %LEL")
    assert place_of(a, (compounds, devices)) == f"艳湖社区 {where}"
    from alerts.dispatch import Dispatch, dispatch_text

    d = Dispatch("d-1", "a-1", "gas", "十堰燃气", "gas", "gas-wang", "王师傅", [], "2026-11-29T03:34:05Z",
                 "2026-11-29T03:04:05Z", "张三", None, "sent", None, None, None, None, None, None, None, [])
    text = dispatch_text(a, d, "http://x/d/t", (compounds, devices))
    assert f"艳湖社区 {where}：燃气浓度超限，燃气浓度 30.0 %LEL" in text and "gas_lel_high" not in text
