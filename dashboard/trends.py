"""History behind every dot: trends of a device or a compound from InfluxDB (through core.influx).

Short ranges read the raw points (policy `autogen`), long ones the 1-minute rollups (`rollup_1m`,
see ingest/retention.py); either way InfluxDB groups the points into time buckets so that no trace
carries more than `MAX_POINTS` points to the browser. Where the rollups are missing (a server without
continuous queries, or data younger than the first rollup), the raw points are grouped instead.
Alert marks (start .. resolution, coloured by severity) go on the same time axis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from alerts.rules import title_of
from core.contract import METRICS, Alert, MetricSpec
from core.influx import InfluxClient, InfluxRejected, InfluxUnavailable, quote_ident, quote_str
from core.severity import COLOUR, label
from core.timebase import beijing, epoch
from dashboard.theme import BG, GRID, MUTED, PANEL, TEXT
from ingest.retention import RAW_POLICY, ROLLUP_POLICY

log = logging.getLogger(__name__)

MAX_POINTS = 2000  # per trace, as the issue asks
RAW_MAX_S = 6 * 3600  # ranges up to this read raw points; longer ones the 1-minute rollups
STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
RANGES: dict[str, tuple[str, int]] = {  # the range buttons: label, seconds
    "1h": ("1 小时", 3600),
    "24h": ("24 小时", 86400),
    "7d": ("7 天", 7 * 86400),
}
METRIC_LABEL: dict[str, str] = {
    "lel_pct": "可燃气体浓度", "co_ppm": "一氧化碳", "pressure_kpa": "燃气压力", "valve_open": "阀门开启",
    "pressure_mpa": "水压", "flow_m3h": "流量", "leak": "漏水", "level_m": "水位",
    "voltage_v": "电压", "current_a": "电流", "leakage_ma": "剩余电流", "temp_c": "线缆温度", "power_kw": "功率",
    "online": "在线", "fps": "帧率", "bitrate_kbps": "码率", "storage_ok": "存储正常",
}
# What a compound's trend shows per device kind: the metric, and how its devices are combined.
COMPOUND_METRICS: dict[str, tuple[str, str]] = {
    "gas": ("lel_pct", "max"), "water": ("pressure_mpa", "mean"), "power": ("leakage_ma", "max"),
    "camera": ("fps", "mean"),
}
AGG_LABEL = {"max": "最大值", "mean": "平均值"}


DB_DOWN = "时序库暂时无法访问，请稍后刷新页面"


class TrendError(Exception):
    """The database could not answer: the page says so instead of drawing an empty chart."""


@dataclass
class Trend:
    metric: str
    unit: str
    title: str
    t_ms: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    lo: list[float | None] = field(default_factory=list)
    hi: list[float | None] = field(default_factory=list)
    source: str = RAW_POLICY  # or ROLLUP_POLICY
    step_s: int = 0


def step_for(span_s: float, max_points: int = MAX_POINTS, floor_s: int = 1) -> int:
    """The smallest round bucket that keeps `span_s` under `max_points` buckets."""
    for s in STEPS_S:
        if s >= floor_s and span_s / s <= max_points:
            return s
    return STEPS_S[-1]


def numeric_metrics(kind: str) -> list[MetricSpec]:
    return [m for m in METRICS.get(kind, {}).values() if not m.is_bool]


def _where(tag: str, value: str, start_s: float, end_s: float) -> str:
    return (f"WHERE {quote_ident(tag)} = {quote_str(value)} AND time >= {int(start_s * 1000)}ms "
            f"AND time <= {int(end_s * 1000)}ms")


def _run(client: InfluxClient, q: str) -> list[list[Any]]:
    try:
        series = client.query(q)
    except InfluxUnavailable as exc:
        log.warning("trend query failed: %s", exc)  # the detail is for the log; staff read what it means
        raise TrendError(DB_DOWN) from None
    except InfluxRejected as exc:
        if "retention policy not found" in exc.error or "not found" in exc.error:
            return []
        log.warning("trend query refused: %s", exc.error)
        raise TrendError("时序库拒绝了查询，已记入日志，请联系系统管理员") from None
    return [row for s in series for row in s.values]


def series(client: InfluxClient, kind: str, metrics: list[str], tag: str, value: str, start_s: float,
           end_s: float, agg: str = "mean") -> list[Trend]:
    """One trend per metric of the series selected by `tag = value` (device_id or compound_id).

    `agg` combines the points of a bucket (and, for a compound, its devices): mean or max."""
    span = max(end_s - start_s, 1.0)
    where = _where(tag, value, start_s, end_s)
    specs = {m.name: m for m in METRICS.get(kind, {}).values()}
    trends = [Trend(m, specs[m].unit if m in specs else "", METRIC_LABEL.get(m, m)) for m in metrics]
    if not trends:
        return []
    rows: list[list[Any]] = []
    if span > RAW_MAX_S:  # long range: the 1-minute rollups
        step = step_for(span, floor_s=60)
        sel = ", ".join(
            f"{agg}({quote_ident(f'{agg}_{m}' if agg != 'mean' else f'mean_{m}')}), "
            f"min({quote_ident('min_' + m)}), max({quote_ident('max_' + m)})" for m in metrics)
        q = (f"SELECT {sel} FROM {quote_ident(ROLLUP_POLICY)}.{quote_ident(kind)} {where} "
             f"GROUP BY time({step}s) fill(none)")
        rows = _run(client, q)
        source = ROLLUP_POLICY
    if not rows:  # short range, or no rollups (yet): group the raw points on the server
        step = step_for(span)
        sel = ", ".join(f"{agg}({quote_ident(m)}), min({quote_ident(m)}), max({quote_ident(m)})" for m in metrics)
        q = (f"SELECT {sel} FROM {quote_ident(RAW_POLICY)}.{quote_ident(kind)} {where} "
             f"GROUP BY time({step}s) fill(none)")
        rows = _run(client, q)
        source = RAW_POLICY
    for tr in trends:
        tr.source, tr.step_s = source, step
    for row in rows:
        t = int(row[0])
        for i, tr in enumerate(trends):
            v, lo, hi = row[1 + 3 * i: 4 + 3 * i]
            if v is None:
                continue
            tr.t_ms.append(t)
            tr.y.append(float(v))
            tr.lo.append(None if lo is None else float(lo))
            tr.hi.append(None if hi is None else float(hi))
    return trends


def latest(client: InfluxClient, kind: str, tag: str, value: str, within_s: float = 3600) -> dict[str, dict[str, Any]]:
    """The newest stored point of each series under `tag = value` (one query, on page load only)."""
    # One `last()` per metric: a message that lacks a metric must not blank that metric's tile.
    where = (f"FROM {quote_ident(RAW_POLICY)}.{quote_ident(kind)} WHERE {quote_ident(tag)} = {quote_str(value)}"
             f" AND time > now() - {int(within_s)}s GROUP BY device_id")
    q = ";".join(f"SELECT last({quote_ident(m)}) AS {quote_ident(m)} {where}" for m in METRICS.get(kind, {}))
    try:
        got = client.query(q) if q else []
    except (InfluxUnavailable, InfluxRejected) as exc:
        log.warning("latest values query failed: %s", exc)
        raise TrendError(DB_DOWN) from None
    out: dict[str, dict[str, Any]] = {}
    for s in got:
        if s.values and len(s.columns) == 2:
            t_ms, v = s.values[0]
            row = out.setdefault(s.tags.get("device_id", ""), {"time": t_ms})
            row[s.columns[1]] = v
            row["time"] = max(row["time"], t_ms)
    return out


def _x(t_ms: Iterable[int]) -> list[str]:
    """Beijing wall-clock text, so the time axis reads in local 24 h time."""
    return [beijing(t / 1000).strftime("%Y-%m-%d %H:%M:%S") for t in t_ms]


def _bj(iso_text: str | None) -> str | None:
    if not iso_text:
        return None
    try:
        return beijing(epoch(iso_text)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def figure(tr: Trend, alerts: list[Alert], start_s: float, end_s: float, height: int = 240,
           threshold: float | None = None) -> dict[str, Any]:
    """A small dark chart: the value (and its min..max band when bucketed), alert marks, threshold."""
    fig = go.Figure()
    x = _x(tr.t_ms)
    if tr.step_s > 1 and any(v is not None for v in tr.hi):
        fig.add_trace(go.Scatter(x=x, y=tr.hi, mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=tr.lo, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor="rgba(96,165,250,0.18)", hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(x=x, y=tr.y, mode="lines", name=tr.title, line={"color": "#60a5fa", "width": 2},
                             hovertemplate="%{x|%m-%d %H:%M:%S}<br>%{y:.2f} " + tr.unit + "<extra></extra>"))
    x0, x1 = beijing(start_s).strftime("%Y-%m-%d %H:%M:%S"), beijing(end_s).strftime("%Y-%m-%d %H:%M:%S")
    for a in alerts[:50]:
        s = _bj(a.started_at)
        if s is None:
            continue
        e = _bj(a.resolved_at) or x1
        colour = COLOUR.get(a.severity, "#888")
        fig.add_vrect(x0=max(s, x0), x1=min(e, x1), fillcolor=colour, opacity=0.14, line_width=0, layer="below")
        fig.add_vline(x=s, line={"color": colour, "width": 2, "dash": "dot"})
    if alerts:  # hoverable marks along the top of the axis, one per alert start
        marks = [(a, _bj(a.started_at)) for a in alerts[:50]]
        marks = [(a, s) for a, s in marks if s and x0 <= s <= x1]
        fig.add_trace(go.Scatter(
            x=[s for _, s in marks], y=[1.0] * len(marks), yaxis="y2", mode="markers", name="告警",
            marker={"symbol": "triangle-down", "size": 14, "color": [COLOUR.get(a.severity, "#888") for a, _ in marks]},
            customdata=[[label(a.severity), a.message or title_of(a.rule)] for a, _ in marks],
            hovertemplate="%{x|%m-%d %H:%M:%S}<br>%{customdata[0]} %{customdata[1]}<extra></extra>",
            showlegend=False))
    if threshold is not None:
        fig.add_hline(y=threshold, line={"color": COLOUR["orange"], "width": 1, "dash": "dash"})
    long_range = end_s - start_s > 86400 * 1.5
    fig.update_layout(
        height=height, margin={"l": 56, "r": 16, "t": 34, "b": 36}, paper_bgcolor=PANEL, plot_bgcolor=BG,
        font={"color": TEXT, "size": 14, "family": "Noto Sans CJK SC, sans-serif"},
        title={"text": f"{tr.title}（{tr.unit}）" if tr.unit else tr.title, "font": {"size": 16}, "x": 0.01},
        xaxis={"range": [x0, x1], "gridcolor": GRID, "tickformat": "%m-%d" if long_range else "%H:%M",
               "hoverformat": "%m-%d %H:%M:%S"},
        yaxis={"gridcolor": GRID, "zeroline": False},
        yaxis2={"overlaying": "y", "range": [0, 1.05], "visible": False, "fixedrange": True},
        showlegend=False, hovermode="closest",
    )
    if not tr.y:
        fig.add_annotation(text="该时段无数据", showarrow=False, font={"color": MUTED, "size": 16},
                           xref="paper", yref="paper", x=0.5, y=0.5)
    out: dict[str, Any] = fig.to_plotly_json()
    return out


def window(range_key: str, now: float | None = None) -> tuple[float, float]:
    end = now if now is not None else time.time()
    return end - RANGES.get(range_key, RANGES["24h"])[1], end


def around(alert: Alert, before_s: float = 1800, after_s: float = 1800) -> tuple[float, float]:
    """The chart window of an alert: from before it started to after it ended (or now)."""
    start = epoch(alert.started_at)
    end = epoch(alert.resolved_at) if alert.resolved_at else time.time()
    return start - before_s, min(max(end, start) + after_s, time.time())


def fmt_value(v: Any, unit: str = "") -> str:
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, int | float):  # a reading that happens to be whole (31) keeps its unit too
        return f"{v:.2f}".rstrip("0").rstrip(".") + (f" {unit}" if unit and unit != "bool" else "")
    return "" if v is None else str(v)


def when(t_ms: Any) -> str:
    try:
        return beijing(float(t_ms) / 1000).strftime("%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return ""


def datetime_of(t_ms: int) -> datetime:
    return beijing(t_ms / 1000)
