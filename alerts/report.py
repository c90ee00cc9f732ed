"""The period report (月报) per community: what happened and how fast people answered it.

For the alerts that STARTED in the period (Beijing time; a month is `--month 2026-11`):
alerts by kind and severity; time from raise to the first acknowledgement, to the first arrival on
site (from a dispatch) and to resolution, each as count, median and p90 (nearest rank: the
smallest time within which 90 % were done); alerts by compound; the devices that raised most
(two alerts or more); the dispatches made in the period that are still open; and how often a close
was given over a live reading (an override, alerts/guard.py) and an incident came back within its
watch (复燃, reopened). Patrols (巡检, alerts/patrols.py): the rounds of each plan that ended in the
period and how many were done (completion), and the hazards found up to the period's end: still
open, closed, and overdue (open past their rectification deadline at the period's end, or now).
Each community has its section, and 全街道 sums them. Written as CSV (`to_csv`) and as an HTML
page with plotly charts (`to_html`), served by the dashboard at /report and written by
`smartcommunity report`.
"""

from __future__ import annotations

import csv
import html
import io
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.dispatch import OPEN_STATES, STATE_LABEL, Dispatch
from alerts.patrols import Plans, hazard_overdue, rounds_in
from alerts.store import Store
from alerts.timeline import Event
from core.contract import COMMUNITIES, KIND_LABEL, KINDS
from core.settings import Settings
from core.severity import COLOUR, SEVERITIES
from core.severity import label as severity_label
from core.timebase import BEIJING, beijing, epoch, iso

ALL = "*"  # the whole sub-district
ALL_LABEL = "全街道"
MEASURES: tuple[tuple[str, str], ...] = (("ack", "确认"), ("arrive", "到场"), ("resolve", "解除"))
TOP_DEVICES = 10


@dataclass(frozen=True)
class Period:
    start: float  # epoch seconds, inclusive
    end: float  # exclusive
    label: str

    @classmethod
    def month(cls, text: str) -> Period:
        """`2026-11` → that month in Beijing time."""
        try:
            first = datetime.strptime(text, "%Y-%m").replace(tzinfo=BEIJING)
        except ValueError:
            raise ValueError(f"month {text!r}: expected YYYY-MM, e.g. 2026-11") from None
        nxt = (first + timedelta(days=32)).replace(day=1)
        return cls(first.timestamp(), nxt.timestamp(), text)

    @classmethod
    def this_month(cls) -> Period:
        return cls.month(f"{beijing():%Y-%m}")

    @classmethod
    def days(cls, first: str, last: str) -> Period:
        """From the day `first` to the day `last` inclusive (YYYY-MM-DD, Beijing time)."""
        try:
            a = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=BEIJING)
            b = datetime.strptime(last, "%Y-%m-%d").replace(tzinfo=BEIJING) + timedelta(days=1)
        except ValueError:
            raise ValueError("dates must be YYYY-MM-DD, e.g. 2026-11-01") from None
        if b <= a:
            raise ValueError(f"the period {first} .. {last} is empty")
        return cls(a.timestamp(), b.timestamp(), f"{first}_{last}")

    def title(self) -> str:
        a, b = beijing(self.start), beijing(self.end - 1)
        return f"{a:%Y-%m-%d} 至 {b:%Y-%m-%d}"


def nearest_rank(values: list[float], q: float) -> float | None:
    """The q-quantile by nearest rank (p90: the smallest value ≥ 90 % of the values)."""
    if not values:
        return None
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


@dataclass(frozen=True)
class Stat:
    n: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(len(values), statistics.median(values) if values else None, nearest_rank(values, 0.9))


@dataclass
class Section:
    community: str
    total: int = 0
    label: str | None = None  # what the sum is called when it is not the whole street's (a scoped reader's)
    by_kind_severity: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m, _ in MEASURES})
    by_compound: Counter[str] = field(default_factory=Counter)
    by_device: Counter[str] = field(default_factory=Counter)
    open_dispatches: list[Dispatch] = field(default_factory=list)
    # Closes given over a live reading (resolve or archive with an override) and incidents that came
    # back within their watch (复燃): the 6·13 lesson, counted per community.
    overrides: int = 0
    reopened: int = 0
    patrol_rounds: int = 0  # patrol rounds that ended in the period
    patrol_done: int = 0  # of them, done (every checkpoint checked in within the round)
    hazards_open: int = 0  # found by the period's end and not closed (待整改 or 已整改待销号)
    hazards_closed: int = 0
    hazards_overdue: int = 0  # still open (not rectified) past the deadline

    @property
    def patrol_completion(self) -> float | None:
        return self.patrol_done / self.patrol_rounds if self.patrol_rounds else None

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return ALL_LABEL if self.community == ALL else COMMUNITIES.get(self.community, self.community)

    def stats(self) -> dict[str, Stat]:
        return {m: Stat.of(v) for m, v in self.durations.items()}

    def top_devices(self) -> list[tuple[str, int]]:
        return [(d, n) for d, n in sorted(self.by_device.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 2][
            :TOP_DEVICES]


@dataclass
class Report:
    period: Period
    generated_at: str
    sections: dict[str, Section]  # community (and ALL) → section
    compound_names: dict[str, str] = field(default_factory=dict)
    device_places: dict[str, str] = field(default_factory=dict)


def build_report(store: Store, period: Period, community: str | None = None, *, now: float,
                 compound_names: dict[str, str] | None = None,
                 device_places: dict[str, str] | None = None, plans: Plans | None = None) -> Report:
    rows = store.report_rows(iso(period.start), iso(period.end), community, OPEN_STATES)
    first, overrides = rows.firsts, rows.overrides
    comms = [community] if community else list(COMMUNITIES)
    sections = {c: Section(c) for c in [*comms, ALL]}
    for a in rows.alerts:
        started = epoch(a.started_at)
        times = {
            "ack": first.get((a.alert_id, str(Event.ACKNOWLEDGED))),
            "arrive": first.get((a.alert_id, str(Event.ARRIVED))),
            "resolve": a.resolved_at if a.state == "resolved" else None,
        }
        for sec in (sections.setdefault(a.community, Section(a.community)), sections[ALL]):
            sec.total += 1
            sec.by_kind_severity[(a.kind, a.severity)] += 1
            sec.by_compound[a.compound_id] += 1
            sec.by_device[a.device_id] += 1
            sec.overrides += overrides.get(a.alert_id, 0)
            sec.reopened += a.reopened or 0
            for m, t in times.items():
                if t is not None:
                    sec.durations[m].append(max(0.0, epoch(t) - started))
    for r, comm in rows.open_dispatches:
        d = Dispatch.from_row(r)
        for c in (comm, ALL):
            sections.setdefault(c, Section(c)).open_dispatches.append(d)
    _patrols(store, period, community, sections, now, plans)
    return Report(period, iso(now), sections, compound_names or {}, device_places or {})


def _patrols(store: Store, period: Period, community: str | None, sections: dict[str, Section], now: float,
             plans: Plans | None) -> None:
    """Patrol completion and hazards per community (alerts/patrols.py)."""
    end = min(period.end, now)
    if plans is not None and plans.plans:
        longest = max(p.every_s for p in plans)
        got: dict[str, list[tuple[str, float]]] = {}
        for r in store.checkins(iso(period.start - longest), iso(end)):
            got.setdefault(r["plan_id"], []).append((r["checkpoint"], epoch(r["at"])))
        for plan in plans:
            if community and plan.community != community:
                continue
            due, done = rounds_in(plan, period.start, end, got.get(plan.plan_id, ()))
            for c in (plan.community, ALL):
                sec = sections.setdefault(c, Section(c))
                sec.patrol_rounds += due
                sec.patrol_done += done
    for h in store.hazards(community=community, found_before=iso(end)):
        closed = h["state"] == "closed" and h["closed_at"] is not None and epoch(h["closed_at"]) < end
        state = h["state"] if h["state"] != "closed" or closed else "rectified"
        for c in (h["community"], ALL):
            sec = sections.setdefault(c, Section(c))
            if closed:
                sec.hazards_closed += 1
            else:
                sec.hazards_open += 1
                sec.hazards_overdue += hazard_overdue({**h, "state": state}, end)


def place_names(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """(compound id → name, device id → install place) from the GIS layers and the registry, when
    they load; a report without them still has every number, with ids."""
    compounds: dict[str, str] = {}
    buildings: dict[str, str] = {}
    devices: dict[str, str] = {}
    try:
        from geodata.layers import layers_dir, load_layers

        layers = load_layers(layers_dir(settings))
        compounds = {pid: p.name for pid, p in layers.places.items()}
        b = layers.buildings
        buildings = {str(i): str(n) for i, n in zip(b["building_id"], b["name"], strict=True)}
    except Exception:  # a missing or broken layer costs the names, not the report
        pass
    try:
        from core.registry import ensure_registry, load_registry

        for dev in load_registry(ensure_registry(settings)).values():
            bid = str(dev.extra.get("building_id") or "")
            where = [compounds.get(dev.compound_id, dev.compound_id), buildings.get(bid, bid),
                     str(dev.extra.get("install") or "")]
            devices[dev.device_id] = " ".join(w for w in where if w)
    except Exception:
        pass
    return compounds, devices


# ---------------------------------------------------------------- CSV

CSV_HEADER = ("section", "community", "key", "detail", "value")


def _fmt_s(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def to_csv(rep: Report) -> str:
    """One tidy table: section, community, key, detail, value (UTF-8 with BOM, for Excel)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    w.writerow(("period", "", rep.period.label, rep.period.title(), ""))
    for c, sec in rep.sections.items():
        w.writerow(("alerts_total", c, "", sec.name, sec.total))
        w.writerow(("closed_over_live_reading", c, "", "强制解除/归档 (读数仍在报警)", sec.overrides))
        w.writerow(("reopened", c, "", "复燃/重新告警 (观察期内再次报警)", sec.reopened))
        w.writerow(("patrol_rounds", c, "due", "巡检应完成轮次", sec.patrol_rounds))
        w.writerow(("patrol_rounds", c, "done", "巡检已完成轮次", sec.patrol_done))
        for key, label, n in (("open", "未销号", sec.hazards_open), ("closed", "已销号", sec.hazards_closed),
                              ("overdue", "超期未整改", sec.hazards_overdue)):
            w.writerow(("hazards", c, key, label, n))
        for (kind, sev), n in sorted(sec.by_kind_severity.items()):
            w.writerow(("alerts_by_kind_severity", c, kind, sev, n))
        for m, st in sec.stats().items():
            w.writerow((f"time_to_{m}_s", c, "n", "", st.n))
            w.writerow((f"time_to_{m}_s", c, "median", "", _fmt_s(st.median)))
            w.writerow((f"time_to_{m}_s", c, "p90", "", _fmt_s(st.p90)))
        for cid, n in sorted(sec.by_compound.items(), key=lambda kv: (-kv[1], kv[0])):
            w.writerow(("alerts_by_compound", c, cid, rep.compound_names.get(cid, ""), n))
        for dev, n in sec.top_devices():
            w.writerow(("top_repeat_devices", c, dev, rep.device_places.get(dev, ""), n))
        for d in sec.open_dispatches:
            w.writerow(("open_dispatches", c, d.dispatch_id,
                        f"{d.alert_id} {d.team_name} {STATE_LABEL.get(d.state, d.state)} 期限 {d.deadline}",
                        d.state))
    return "\ufeff" + buf.getvalue()


# ---------------------------------------------------------------- HTML with plotly charts


def _dur(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 120:
        return f"{v:.0f} 秒"
    if v < 7200:
        return f"{v / 60:.1f} 分"
    return f"{v / 3600:.1f} 时"


def count_axis(top: float) -> dict[str, Any]:
    """An axis of counts: whole numbers only (never a 0.5 alert), from zero."""
    return {"rangemode": "tozero", "tickformat": "d", **({"dtick": 1} if top <= 10 else {})}


def _figures(rep: Report, theme: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    secs = [s for c, s in rep.sections.items() if c != ALL]
    names = [s.name for s in secs]
    layout = {"template": "plotly_white", "height": 340, "margin": {"l": 50, "r": 20, "t": 40, "b": 60},
              "font": {"family": "Noto Sans CJK SC, sans-serif"}, "autosize": True,
              "legend": {"orientation": "h", "traceorder": "normal"}, **(theme or {})}
    top = max([sec.total for sec in secs] or [0])
    out: list[tuple[str, Any]] = []
    f1 = go.Figure(layout={**layout, "barmode": "stack", "title": "各社区告警数（按级别）", "yaxis": count_axis(top)})
    for sev in SEVERITIES:
        f1.add_bar(name=severity_label(sev), x=names, y=[sum(n for (_k, s), n in sec.by_kind_severity.items()
                                                            if s == sev) for sec in secs],
                   marker_color=COLOUR[sev])
    out.append(("by_severity", f1))
    f2 = go.Figure(layout={**layout, "barmode": "stack", "title": "各社区告警数（按类别）", "yaxis": count_axis(top)})
    for kind in KINDS:
        f2.add_bar(name=KIND_LABEL.get(kind, kind), x=names,
                   y=[sum(n for (k, _s), n in sec.by_kind_severity.items() if k == kind) for sec in secs])
    out.append(("by_kind", f2))
    f3 = go.Figure(layout={**layout, "barmode": "group", "title": "响应时间（分钟）：中位数 / P90",
                           "yaxis": {"rangemode": "nonnegative"}})
    for m, label in MEASURES:
        st = [sec.stats()[m] for sec in secs]
        f3.add_bar(name=f"{label}中位数", x=names, y=[(s.median or 0) / 60 for s in st])
        f3.add_bar(name=f"{label}P90", x=names, y=[(s.p90 or 0) / 60 for s in st])
    out.append(("durations", f3))
    allc = rep.sections[ALL].by_compound.most_common(15)
    f4 = go.Figure(layout={**layout, "title": "告警最多的小区/单位", "height": max(300, 28 * len(allc) + 80),
                           "margin": {"l": 160, "r": 20, "t": 40, "b": 40},
                           "xaxis": count_axis(max([n for _, n in allc] or [0]))})
    f4.add_bar(orientation="h", y=[rep.compound_names.get(c, c) for c, _ in reversed(allc)],
               x=[n for _, n in reversed(allc)], marker_color="#2b6fd6")
    out.append(("by_compound", f4))
    return out


class Markup(str):
    """A table cell that is already HTML (a link), not text to escape."""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return '<p class="none">无</p>'
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{v if isinstance(v, Markup) else html.escape(str(v))}</td>" for v in r)
                    + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


PAGE_CSS = """body{font-family:"Noto Sans CJK SC",sans-serif;margin:0 auto;max-width:1200px;padding:16px;color:#1b2533}
h1{font-size:24px}h2{font-size:19px;border-bottom:2px solid #2b6fd6;padding-bottom:4px;margin-top:32px}
h3{font-size:16px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0;font-size:14px}
td,th{border:1px solid #ccd6e3;padding:4px 8px;text-align:left}th{background:#eef3fa}.none{color:#777}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:8px}.chart{min-width:0}
.nav a{margin-right:12px}.meta{color:#555}"""


# Each chart was drawn while the grid below it was still filling (the first one as wide as the page):
# once all are there, fit each to its cell.
RESIZE_JS = ("<script>window.addEventListener('load', function () { document.querySelectorAll('.js-plotly-plot')"
             ".forEach(function (gd) { Plotly.Plots.resize(gd); }); });</script>")


def to_html(rep: Report, plotly_js: str, nav: str = "", css: str = PAGE_CSS,
            chart_theme: dict[str, Any] | None = None) -> str:
    """The report page; `plotly_js` is a <script> tag (a local URL, or the library inline for a file);
    `nav` is HTML put above the title (the dashboard's period picker); `css` and `chart_theme` let the
    dashboard dress it like its other pages (the file keeps the light, printable look)."""
    # Each chart fills its grid cell, whatever the screen; a report has nothing to zoom, and the mode
    # bar would sit over the chart titles on a phone.
    conf = {"responsive": True, "displaylogo": False, "displayModeBar": False}
    charts = "".join(f'<div class="chart" id="chart-{key}">'
                     f"{fig.to_html(full_html=False, include_plotlyjs=False, config=conf, default_width='100%')}"
                     "</div>" for key, fig in _figures(rep, chart_theme))
    parts = [nav, f"<h1>车城路街道 安全运行报告 {html.escape(rep.period.title())}</h1>",
             f'<p class="meta">生成于 {beijing(epoch(rep.generated_at)):%Y-%m-%d %H:%M} · 按告警产生时间统计 · '
             "响应时间自告警产生起算；P90 为 90% 告警在此时间内完成</p>",
             f'<div class="charts">{charts}</div>']
    for c, sec in rep.sections.items():
        st = sec.stats()
        parts.append(f'<section id="sec-{html.escape(c if c != ALL else "all")}"><h2>{html.escape(sec.name)}'
                     f"（告警 {sec.total} 起）</h2>")
        parts.append("<h3>告警类别与级别</h3>" + _table(
            ["类别", *[severity_label(s) for s in SEVERITIES], "合计"],
            [[KIND_LABEL.get(k, k), *[sec.by_kind_severity.get((k, s), 0) for s in SEVERITIES],
              sum(sec.by_kind_severity.get((k, s), 0) for s in SEVERITIES)]
             for k in sorted({k for k, _ in sec.by_kind_severity})]))
        parts.append("<h3>强制解除与复燃</h3>" + _table(
            ["读数仍在报警时强制解除/归档", "观察期内复燃(同一警情重开)"], [[sec.overrides, sec.reopened]]))
        pc = sec.patrol_completion
        parts.append("<h3>巡检与隐患</h3>" + _table(
            ["巡检应完成轮次", "已完成", "完成率", "隐患未销号", "已销号", "超期未整改"],
            [[sec.patrol_rounds, sec.patrol_done, "—" if pc is None else f"{pc:.0%}", sec.hazards_open,
              sec.hazards_closed, sec.hazards_overdue]]))
        parts.append("<h3>响应时间</h3>" + _table(
            ["环节", "起数", "中位数", "P90"],
            [[label, st[m].n, _dur(st[m].median), _dur(st[m].p90)] for m, label in MEASURES]))
        parts.append("<h3>各小区/单位告警数</h3>" + _table(
            ["小区/单位", "告警数"],
            [[rep.compound_names.get(cid) or cid, n]
             for cid, n in sorted(sec.by_compound.items(), key=lambda kv: (-kv[1], kv[0]))]))
        parts.append("<h3>重复告警设备</h3>" + _table(
            ["设备", "位置", "告警数"], [[d, rep.device_places.get(d, ""), n] for d, n in sec.top_devices()]))
        parts.append("<h3>未完成派单</h3>" + _table(
            ["派给", "状态", "期限", "告警"],
            [[f"{d.team_name}·{d.assignee}" if d.member_id else d.team_name,
              STATE_LABEL.get(d.state, d.state), f"{beijing(epoch(d.deadline)):%m-%d %H:%M}",
              Markup(f'<a href="/alerts/{html.escape(d.alert_id)}">查看告警</a>')]
             for d in sec.open_dispatches]))
        parts.append("</section>")
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>安全运行报告 {html.escape(rep.period.title())}</title><style>{css}</style>{plotly_js}"
            f"</head><body>{''.join(parts)}{RESIZE_JS}</body></html>")


def plotly_inline() -> str:
    """plotly.js itself, inline, for a report file that opens without any server or network."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'
