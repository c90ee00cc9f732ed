"""The rules file: every default rule cites its source, the contract's minimum set is there as worded,
a bad file is refused with file, line and reason (and a running service keeps its rules), per-compound
and per-device overrides, reload on change."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from alerts.engine import Engine
from alerts.rules import BUNDLED_RULES, RuleError, load_ruleset
from alerts.service import RulesWatcher
from alerts.store import AlertStore
from core.contract import Alert, Device
from tests.alerts.test_engine import Clock, tel

GOOD = BUNDLED_RULES.read_text(encoding="utf-8")


def test_every_default_rule_cites_its_source_and_the_readme_table_is_current() -> None:
    from alerts.rules import rules_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for r in load_ruleset().rules:
        assert r.source.strip(), f"{r.name} has no source"
    assert rules_table() in readme, "README's rule table differs from rules.yaml: paste alerts.rules.rules_table()"


def test_the_contract_minimum_set_is_as_the_contract_words_it() -> None:
    rules = {r.name: r for r in load_ruleset().rules}
    want = {"gas_lel_high": (">=", 25, "red", 0), "gas_lel_warn": (">=", 10, "yellow", 30),
            "power_leakage_high": (">=", 300, "orange", 0), "power_temp_high": (">=", 70, "orange", 0)}
    for name, (op, thr, sev, for_s) in want.items():
        r = rules[name]
        assert (r.op, r.threshold, r.severity, r.for_s) == (op, thr, sev, for_s)
        assert r.clear_threshold is None  # clear = the condition no longer holds, as §4 says
    assert (rules["water_leak"].threshold, rules["water_leak"].severity) == (True, "orange")
    assert (rules["camera_offline"].status, rules["camera_offline"].severity) == ("offline", "yellow")
    assert (rules["camera_tamper"].event, rules["camera_tamper"].severity) == ("tamper", "orange")
    assert (rules["device_silent"].silent_factor, rules["device_silent"].severity) == (3, "blue")


def test_the_standards_thresholds() -> None:
    rules = {r.name: r for r in load_ruleset().rules}
    assert rules["power_voltage_low"].threshold == 198 and rules["power_voltage_high"].threshold == 235.4
    assert rules["water_pressure_low"].threshold == 0.14
    assert [lv.threshold for lv in rules["gas_lel_high"].levels] == [50]


@pytest.mark.parametrize(("text", "reason"), [
    ("rules:\n  - 5\n", r":2: rule 1: a rule is a mapping"),
    (GOOD.replace("    threshold: 70\n", "    threshold: 70\n    colour: red\n", 1),
     r":\d+: rule 4 \(power_temp_high\): unknown keys"),
    (GOOD.replace("severity: blue\n", "severity: purple\n", 1), r":\d+: rule 8 \(device_silent\): severity"),
    (GOOD.replace("    for_s: 30\n", "    for_s: soon\n", 1), r"rule 2 \(gas_lel_warn\): for_s must be a number"),
    ("rules:\n  - name: x\n    kind: gas\n    metric: lel_pct\n  op: '>='\n", r":5: not valid YAML"),
    (GOOD.replace("overrides: []", "overrides:\n  - {rule: nope, compound: YL-01, threshold: 80}"),
     r":\d+: override 1: no rule 'nope'"),
])
def test_a_bad_file_is_refused_with_file_line_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RuleError) as exc:
        load_ruleset(p)
    assert str(exc.value).startswith(str(p))
    assert re.search(reason, str(exc.value)), str(exc.value)


def test_the_line_named_is_the_rules_line(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(GOOD.replace("  - name: power_temp_high\n", "  - 5\n  - name: power_temp_high\n"), encoding="utf-8")
    with pytest.raises(RuleError) as exc:
        load_ruleset(p)
    line = int(str(exc.value).split(":")[1])
    assert p.read_text().splitlines()[line - 1].strip() == "- 5"


def test_reload_on_change_and_a_bad_edit_keeps_the_running_rules(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(GOOD, encoding="utf-8")
    w = RulesWatcher(p)
    assert w.poll() is None  # unchanged
    p.write_text(GOOD.replace("threshold: 70", "threshold: 75"), encoding="utf-8")
    os.utime(p, (time.time() + 2, time.time() + 2))
    assert w.poll() is None  # changed: read once it has stopped changing
    time.sleep(w.SETTLE_S + 0.1)
    fresh = w.poll()
    assert fresh is not None and {r.name: r for r in fresh.rules}["power_temp_high"].threshold == 75
    p.write_text("rules:\n  - 5\n", encoding="utf-8")
    os.utime(p, (time.time() + 4, time.time() + 4))
    w.poll()
    time.sleep(w.SETTLE_S + 0.1)
    assert w.poll() is None and w.last_error is not None and ":2:" in w.last_error
    assert {r.name: r for r in w.ruleset.rules}["power_temp_high"].threshold == 75


def test_overrides_per_compound_and_per_device(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(GOOD.replace("overrides: []", """overrides:
  - {rule: power_temp_high, compound: BOILER, threshold: 85, reason: "锅炉房 boiler room runs hotter"}
  - {rule: power_temp_high, device: P-HOT, threshold: 95}
"""), encoding="utf-8")
    store = AlertStore(tmp_path / "a.sqlite")
    published: list[Alert] = []
    clock = Clock()
    engine = Engine(load_ruleset(p), store, published.append, 60, 0, clock=clock)
    boiler = Device("P-B", "power", "yanling", "BOILER", 15, 110.79, 32.65)
    hot = Device("P-HOT", "power", "yanling", "BOILER", 15, 110.79, 32.65)
    plain = Device("P-1", "power", "yanling", "YL-01", 15, 110.79, 32.65)
    for dev in (boiler, hot, plain):
        engine.handle(tel(dev, clock, temp_c=80.0))
    assert [a.device_id for a in published] == ["P-1"]
    engine.handle(tel(boiler, clock, temp_c=86.0))
    engine.handle(tel(hot, clock, temp_c=90.0))
    assert [a.device_id for a in published] == ["P-1", "P-B"]
    assert published[-1].threshold == 85
    store.close()


def test_every_rule_has_chinese_words_and_levels_never_read_against_the_warning_scale() -> None:
    from alerts.rules import load_rules, title_of
    from core.severity import LEVEL

    han = re.compile(r"[\u4e00-\u9fff]")
    rules = load_rules()
    for r in rules:
        assert r.title and han.search(r.title) and not re.search(r"[A-Za-z_]{3,}", r.title), r.name
        assert r.description and han.search(r.description), r.name
        assert title_of(r.name) == r.title
        for lv in r.levels:  # 一级..四级 are the warning scale: a detector level must not use them
            assert not any(word in lv.label for word in LEVEL.values()), (r.name, lv.label)
    assert len({r.title for r in rules}) == len(rules), "two rules under one title"
    assert title_of("no_such_rule") == "no_such_rule"  # an old alert's rule is shown, not hidden


def test_a_rule_file_that_does_not_load_keeps_the_bundled_words(tmp_path: Path) -> None:
    from alerts.rules import title_of

    bad = tmp_path / "rules.yaml"
    bad.write_text("rules: [", encoding="utf-8")
    assert title_of("gas_lel_high", bad) == "燃气浓度超限"
    bad.write_text("rules:\n  - {name: x_high, title: 某某超限, kind: gas, metric: lel_pct, op: '>=', threshold: 5,"
                   " severity: red, message: m}\n", encoding="utf-8")
    assert title_of("x_high", bad) == "某某超限" and title_of("gas_lel_high", bad) == "燃气浓度超限"
