"""Every page as staff see it, in real Chromium on the wall (1920×1080) and on a phone (390×844):
no rule id, English word or internal term in visible text; nothing wider than a phone; on the wall
no text under 24 px and every count legible (contrast ≥ 4.5:1 against what is behind it).
Screenshots go to /tmp/words_*.png."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from alerts.rules import load_rules
from alerts.store import AlertStore, store_path
from core.settings import Settings
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, red_alert, served, served_with_alerts  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

WALL = {"viewport": {"width": 1920, "height": 1080}, "locale": "zh-CN"}
# A phone's layout in CSS pixels; drawn at one device pixel per CSS pixel, since what is checked (words,
# widths, sizes) does not depend on the density and a map drawn at 2x costs the walk 4x the pixels.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN"}
# What may stand in Latin letters on a page, because it is how staff name it: units (%LEL, mA, V,
# kPa, MPa, m³/h, kW, ppm, fps), device ids (G-000123: printed on the device), the report's P90 and
# CSV, the map's copyright line (OpenStreetMap), AED (the name on the public defibrillator boxes and
# in the national guidance on them), weekday-less dates and times are digits anyway; a link in a message
# as its recipient sees it (the demo's inbox shows the SMS text as the phone shows it).
ALLOWED = re.compile(
    r"%LEL|LEL|\bm[Aa]\b|\bkPa\b|\bMPa\b|\bm³/h\b|m3/h|\bkW\b|\bkV?\b|\bV\b|\bA\b|\bppm\b|°C|\bfps\b|\bkbit/s\b|"
    r"\b[A-Z]{1,3}-\d{3,}\b|\bP90\b|\bCSV\b|OpenStreetMap|©|\bMQTT\b|\bInfluxDB\b|\bm\b|\bMB\b|\bGB\b|\bs\b|\bAED\b|https?://\S+")
INTERNAL = ("outbox", "webhook", "shelved", "superseded", "alert_id", "None", "null", "undefined", "NaN")


def strange_words(text: str) -> list[str]:
    rule_ids = {r.name for r in load_rules()}
    out = [w for w in rule_ids if w in text]
    out += [w for w in INTERNAL if re.search(rf"\b{w}\b", text)]
    rest = ALLOWED.sub(" ", text)
    out += re.findall(r"[A-Za-z_]{2,}", rest)
    return sorted(set(out))


def visible_text(page: Any) -> str:
    """The page's text and what its fields show (a chosen option, a typed value)."""
    return str(page.evaluate("""() => [document.body.innerText, ...Array.from(document.querySelectorAll('select, '
        + 'input:not([type=hidden]):not([type=file]):not([type=checkbox]):not([type=radio])')).map(e =>
        e.tagName === 'SELECT' ? (e.selectedOptions[0] ? e.selectedOptions[0].text : '')
        : (e.value || e.placeholder || ''))].join(' ')"""))


def open_rule_filter(page: Any) -> str:
    """The /alerts rule filter's options, opened as a person would."""
    page.click("#f-rule")
    page.wait_for_timeout(400)
    return str(page.evaluate("() => Array.from(document.querySelectorAll('#f-rule, [role=listbox], "
                             ".dash-dropdown-options, .Select-menu-outer')).map(e => e.innerText).join(' ')"))


def wait_ready(page: Any) -> None:
    """Loaded and drawn: Dash has put the page in (no loading placeholder); live pages never go
    network-idle (the clock, the live layers), so no waiting for that."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => !document.querySelector('._dash-loading') && document.body.innerText.length > 20",
                           timeout=20_000)
    page.wait_for_timeout(600)  # the page's first callbacks fill in what it shows


SMALL_TEXT_JS = """(min) => { const out = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.offsetParent && getComputedStyle(el).position !== 'fixed') continue;
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3 && n.textContent.trim())
      .map(n => n.textContent.trim()).join(' ');
    if (!own) continue;
    const r = el.getBoundingClientRect(); if (r.width === 0 || r.height === 0) continue;
    const fs = parseFloat(getComputedStyle(el).fontSize);
    if (fs < min) out.push([own.slice(0, 40), fs, el.className && el.className.toString()]);
  } return out; }"""

# Text cut off at the right edge: a clipped page scrolls no wider (its overflow is hidden), so the
# width check alone would miss it. Text in a box that scrolls sideways on purpose (a wide table) or
# ends in an ellipsis on purpose is not cut off.
CLIPPED_JS = """() => { const W = innerWidth, out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3 && n.textContent.trim())
      .map(n => n.textContent.trim()).join(' ');
    if (!own || !el.offsetParent || getComputedStyle(el).textOverflow === 'ellipsis') continue;
    let scrolls = false;
    for (let e = el.parentElement; e; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX; if (o === 'auto' || o === 'scroll') { scrolls = true; break; } }
    if (scrolls) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > W + 1) out.push([own.slice(0, 30), Math.round(r.right)]);
  } return out; }"""

# Text crushed into a column too narrow for it (a word stacked a character a line).
CRUSHED_JS = """() => { const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3 && n.textContent.trim())
      .map(n => n.textContent.trim()).join(' ');
    if (own.length < 3 || !el.offsetParent) continue;
    const r = el.getBoundingClientRect(), fs = parseFloat(getComputedStyle(el).fontSize);
    if (r.width > 0 && r.width < 2.5 * fs && r.height > 2.5 * fs) out.push([own.slice(0, 20), Math.round(r.width)]);
  } return out; }"""

# Contrast of each count (every element whose own text is a number) against the first opaque
# background behind it, per WCAG 2 relative luminance.
CONTRAST_JS = """() => { const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!/^\\d+$/.test(own) || !el.offsetParent) continue;
    const fg = parse(getComputedStyle(el).color), b = bg(el);
    const l1 = lum(fg), l2 = lum(b), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    out.push([own, Math.round(ratio * 100) / 100, el.className && el.className.toString()]);
  } return out; }"""


def pages(base_url: str, settings: Settings) -> tuple[list[str], str]:
    """Every page with something on it: an open red alert with a dispatch (for the field page)."""
    store = AlertStore(store_path(settings.data_path))
    alert = red_alert(store, settings)
    r = requests.post(f"{base_url}/api/alerts/{alert.alert_id}/dispatch", timeout=10,
                      json={"team": "gas", "member": "gas-wang", "deadline_min": 30, "by": "值班员张三"})
    assert r.status_code == 201, r.text
    field = "/d/" + r.json()["link"].split("/d/")[1]
    store.close()
    return (["/", "/wall", "/alerts", f"/alerts/{alert.alert_id}", f"/devices/{alert.device_id}",
             f"/compounds/{alert.compound_id}", "/shelves", "/settings", "/report", field], field)


def check_pages(base_url: str, paths: list[str], field: str | None = None) -> dict[str, Any]:
    """Each path at both sizes: the problems found, by kind (empty: none)."""
    words: dict[str, list[str]] = {}
    wide: dict[str, int] = {}
    small: list[Any] = []
    tiny: list[Any] = []
    faint: list[Any] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for size, opts in (("wall", WALL), ("phone", PHONE)):
            ctx = browser.new_context(**opts)
            page = ctx.new_page()
            for path in paths:
                page.goto(base_url + path)
                wait_ready(page)
                text = visible_text(page)
                if path == "/alerts":
                    text += " " + open_rule_filter(page)
                name = "field" if path == field else (path.strip("/").replace("/", "_")[:20] or "console")
                page.screenshot(path=f"/tmp/words_{size}_{name}.png")
                bad = strange_words(text)
                if bad:
                    words[f"{size} {path}"] = bad
                if size == "phone":
                    sw = int(page.evaluate("() => document.documentElement.scrollWidth"))
                    if sw > int(page.evaluate("() => innerWidth")):
                        wide[path] = sw
                    crushed = page.evaluate(CRUSHED_JS)
                    if crushed:
                        wide[path + " (crushed)"] = crushed
                    cut = page.evaluate(CLIPPED_JS)
                    if cut:
                        wide[path + " (cut off)"] = cut
                if size == "wall" and path == "/":  # the console's counts are read from across the room too
                    faint += [["console", *c] for c in page.evaluate(CONTRAST_JS) if c[1] < 4.5]
                if size == "wall":  # the title bar (every page's): the navigation never runs over the title
                    gap = page.evaluate("() => { const n = document.querySelector('.nav'), "
                                        "t = document.querySelector('.title-block'); return n && t && n.offsetParent ? "
                                        "n.getBoundingClientRect().left - t.getBoundingClientRect().right : 0; }")
                    if gap < 0:
                        words[f"title bar overlap {path} (px)"] = [str(gap)]
                if size == "wall" and path == "/wall":
                    small = page.evaluate(SMALL_TEXT_JS, 24)
                    faint += [["wall", *c] for c in page.evaluate(CONTRAST_JS) if c[1] < 4.5]
                    counts = page.evaluate(CONTRAST_JS)
                    assert counts, "the wall shows its counts"
                if size == "wall" and path == "/inbox":  # read at a desk: body text no smaller than the lists'
                    tiny = page.evaluate(SMALL_TEXT_JS, 16)
            ctx.close()
        browser.close()
    problems = {"words staff should not see": words, "wider than the phone (scrollWidth)": wide,
                "wall text under 24 px": small, "wall counts below 4.5:1 contrast": faint,
                "inbox text under 16 px at 1920×1080": tiny}
    return {k: v for k, v in problems.items() if v}


def test_pages_speak_chinese_and_fit(served: tuple[str, Settings]) -> None:  # noqa: F811
    base_url, settings = served
    paths, field = pages(base_url, settings)
    found = check_pages(base_url, paths, field)
    Path("/tmp/words_problems.json").write_text(json.dumps(found, ensure_ascii=False, indent=1), encoding="utf-8")
    assert not found, found


def test_the_demo_inbox_page_speaks_chinese_and_fits(tmp_path: Path) -> None:
    """The demo's inbox with what the real channels sent its real receiver (a robot's markdown, an
    @-mention, SMS with their links), and the report, whose title bar (every page's) now carries its link."""
    from waitress import create_server

    from dashboard.app import create_app
    from tests.alerts.test_inbox import CENTER, LS_DUTY, leak_message, send_all, start_receiver
    from tests.dashboard.test_dash_browser import free_port
    from tests.dashboard.test_inbox_page import inbox_settings

    s = inbox_settings(tmp_path / "var")
    receiver = start_receiver(s)
    app = create_app(s)
    port = free_port()
    srv = create_server(app.server, host="127.0.0.1", port=port, threads=6)
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    try:
        store = AlertStore(store_path(s.data_path))
        alert = red_alert(store, s)
        store.close()
        send_all(s, leak_message(alert.alert_id), [LS_DUTY, CENTER])
        found = check_pages(f"http://127.0.0.1:{port}", ["/inbox", "/report"])
    finally:
        srv.close()
        app.server.config["SC_DASHBOARD"].close()
        receiver.stop()
    Path("/tmp/words_inbox_problems.json").write_text(json.dumps(found, ensure_ascii=False, indent=1),
                                                      encoding="utf-8")
    assert not found, found


def test_the_checks_can_fail() -> None:
    """The word check sees what it must: a rule id, English, an internal term; and lets units through."""
    assert strange_words("燃气浓度 31.0 %LEL ≥ 25 %LEL 设备 G-000123 12 mA 220 V") == []
    assert "fire_risk" in strange_words("规则 fire_risk")
    assert "outbox" in strange_words("已通知 outbox 送达")
    assert "Loading" in strange_words("Loading...")


