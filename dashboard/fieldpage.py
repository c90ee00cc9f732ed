"""The field page (现场处置页): what an assignee opens from the dispatch message on their phone.

`/d/<token>`: server-rendered HTML, no JS framework, readable on a 390×844 phone, buttons ≥ 48 px.
The signed token (alerts/dispatch.py) is the only credential: it names one alert and one dispatch,
expires, and opens only this page and its three actions — accept (接单), arrived (已到场) and the
feedback form (cause, action, text, up to 3 photos). It shows the device's reading now; while the
device is still in alarm (alerts/guard.py) a feedback — 处置完毕 — needs a re-measurement on site (复测)
and a stated reason, or it is refused. Anything refused (a forged, expired or
mismatched link, a second acceptance, an oversize or non-image photo) gets a clear message and
changes nothing.

Its forms post to `…?ft=<form token>` (`form_token`, per link): a browser without Fetch Metadata
sends `Origin: null` from this no-referrer page, and the form token is how dashboard/security.py tells
the page's own post from another site's. The feedback photos are shown to the link's holder at
`/d/<token>/photos/<n>`. `SC_LINK_NAME` (in the server's config) names a link by its dispatch id for
logs and the audit, which never hold the token.
"""

from __future__ import annotations

import base64
import hmac
import html
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, redirect, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from alerts.dispatch import (
    ACTIONS,
    CAUSES,
    MAX_PHOTOS,
    STATE_LABEL,
    Dispatch,
    DispatchBook,
    Places,
    Refused,
    form_token,
    photo_path,
    place_of,
    read_link,
)
from alerts.guard import Live
from alerts.store import Store
from core.contract import METRICS
from core.influx import client_for
from core.settings import Settings
from core.severity import COLOUR
from core.severity import label as severity_label
from core.timebase import beijing, epoch, iso
from dashboard.actions import AlertActions
from dashboard.trends import Trend, TrendError, numeric_metrics, series

log = logging.getLogger(__name__)

CSS = """*{box-sizing:border-box}body{margin:0;font-family:"Noto Sans CJK SC","PingFang SC",sans-serif;
background:#f2f4f7;color:#1b2533;font-size:17px;line-height:1.5}header{color:#fff;padding:14px 16px;
font-size:20px;font-weight:700}main{padding:12px}.card{background:#fff;border-radius:10px;padding:14px;
margin-bottom:12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}.msg{font-size:18px;font-weight:600}.row{
display:flex;justify-content:space-between;gap:8px;padding:3px 0}.k{color:#66768a;flex:none}.v{
text-align:right}.steps{display:flex;gap:6px}.step{flex:1;text-align:center;padding:8px 2px;
border-radius:8px;background:#e6eaf0;font-size:15px}.step.on{background:#1f9d55;color:#fff}.step small{
display:block;font-size:12px}button,.btn{display:block;width:100%;min-height:52px;font-size:19px;
border:0;border-radius:10px;background:#2b6fd6;color:#fff;font-weight:700;margin-top:10px}button.go{
background:#1f9d55}label{display:block;margin:12px 0 4px;color:#44546a}select,textarea,input[type=text]{
width:100%;min-height:48px;font-size:17px;padding:8px;border:1px solid #c3ccd8;border-radius:8px;
background:#fff}textarea{min-height:96px}input[type=file]{width:100%;min-height:48px;font-size:16px;
padding:8px 0}.err{background:#fdecea;color:#a61b1b;border:1px solid #f5c2bd;border-radius:10px;
padding:12px;margin-bottom:12px;font-weight:600}.ok{background:#e8f6ee;color:#17663a;
border:1px solid #b7e2c8;border-radius:10px;padding:12px;margin-bottom:12px;font-weight:600}.late{
color:#c0261b;font-weight:700}.hint{color:#66768a;font-size:14px}
input[type=file]::file-selector-button{min-height:44px;min-width:96px;font-size:16px;margin-right:10px;
border:1px solid #c3ccd8;border-radius:8px;background:#eef3fa}.alarm{border:2px solid #c0261b}.big{
font-size:26px;font-weight:800}"""

OK_TEXT = {"accepted": "已接单，请尽快赶往现场。", "arrived": "已记录到场时间。", "done": "反馈已提交，谢谢！"}


def _page(title: str, colour: str, body: str, status: int = 200) -> Response:
    doc = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" '
           f'content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
           f'<meta name="referrer" content="no-referrer"><title>{html.escape(title)}</title><style>{CSS}</style>'
           f'</head><body><header style="background:{colour}">{html.escape(title)}</header><main>{body}</main>'
           "</body></html>")
    resp = Response(doc, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def refused_page(message: str, status: int) -> Response:
    return _page("无法打开派单", "#5b6573", f'<div class="err" id="error">{html.escape(message)}</div>'
                 '<p class="hint">如需帮助请联系街道指挥中心。</p>', status)


def _hm(iso_text: str | None) -> str:
    return f"{beijing(epoch(iso_text)):%m-%d %H:%M}" if iso_text else ""


def _options(values: tuple[str, ...], name: str, label: str, chosen: str = "") -> str:
    opts = "".join(f'<option value="{html.escape(v)}"{" selected" if v == chosen else ""}>{html.escape(v)}</option>'
                   for v in values)
    return (f'<label for="{name}">{label}</label><select id="{name}" name="{name}" required>'
            f'<option value="">请选择</option>{opts}</select>')


TREND_BEFORE_S = 300  # the sparkline starts this long before the alert
SPARK_W, SPARK_H = 340, 80


def sparkline(tr: Trend | None, threshold: Any, error: str | None = None) -> str:
    """The reading since the alert as a small inline SVG (no script, no library), the threshold dashed."""
    if error is not None:
        return f'<div class="hint" id="trend-none">趋势暂不可用（{html.escape(error[:80])}）</div>'
    if tr is None or len(tr.y) < 2:
        return '<div class="hint" id="trend-none">告警以来暂无更多读数</div>'
    t0, t1 = tr.t_ms[0], tr.t_ms[-1]
    thr = float(threshold) if isinstance(threshold, int | float) and not isinstance(threshold, bool) else None
    top = max([*tr.y, thr or 0.0]) * 1.1 or 1.0

    def xy(t: float, v: float) -> str:
        return f"{(t - t0) / max(t1 - t0, 1) * SPARK_W:.1f},{SPARK_H - v / top * SPARK_H:.1f}"

    pts = " ".join(xy(t, v) for t, v in zip(tr.t_ms, tr.y, strict=True))
    y = f"{SPARK_H - (thr or 0.0) / top * SPARK_H:.1f}"
    line = (f'<line x1="0" x2="{SPARK_W}" y1="{y}" y2="{y}" stroke="#c0261b" stroke-dasharray="4 3"/>'
            if thr is not None else "")
    return (f'<div class="k">告警以来读数（最高 {max(tr.y):.1f} {html.escape(tr.unit)}，虚线为报警值）</div>'
            f'<svg id="trend" viewBox="0 0 {SPARK_W} {SPARK_H}" width="100%" height="{SPARK_H}" role="img">'
            f'{line}<polyline fill="none" stroke="#2b6fd6" stroke-width="2" points="{pts}"/></svg>')


def _reading(live: Live | None, last: dict[str, Any] | None, alert: Any, trend: str = "") -> str:
    """The device's reading now: in alarm (red, with its time), or the last one, cleared; with the
    trend since the alert under it."""
    if live is not None:
        state = "仍在报警" if live.holds else f"已回落, 恢复确认期 {live.holdoff_s:g} 秒未满"
        return (f'<div class="card alarm" id="live-reading"><div class="k">设备实时读数</div>'
                f'<div class="big">{html.escape(live.words())}</div><div class="late">{state}'
                f'（报警值 {html.escape(str(live.threshold))}）</div>{trend}</div>')
    if last is not None and last.get("last_value") is not None and alert is not None:
        unit = METRICS.get(alert.kind, {}).get(alert.metric or "")
        at = f"（{_hm(iso(float(last['last_evidence'])))}）" if last.get("last_evidence") else ""
        return (f'<div class="card" id="live-reading"><div class="k">设备最新读数</div><div class="big">'
                f'{html.escape(str(last["last_value"]))} {unit.unit if unit else ""}{at}</div>'
                f'<div class="hint">未达报警值</div>{trend}</div>')
    return f'<div class="card">{trend}</div>' if trend else ""


def render(token: str, d: Dispatch, alert: Any, places: Places | None, *, ok: str | None = None,
           error: str | None = None, status: int = 200, kept: dict[str, str] | None = None,
           ft: str = "", live: Live | None = None, last: dict[str, Any] | None = None,
           trend: str = "") -> Response:
    """`kept`: what the person had typed in the feedback form, shown again after a refusal; `ft`: the
    link's form token, carried by the forms' actions; `live`: the reading while the device is still in
    alarm (then a feedback needs a 复测 value and a reason); `last`: the condition's last reading
    otherwise."""
    kept = kept or {}
    q = f"?ft={quote(ft)}" if ft else ""
    sev = alert.severity if alert else "blue"
    title = f"{severity_label(sev)}预警 · 派单" if alert else "派单"
    base = f"/d/{token}"
    late = d.state == "sent" and epoch(d.deadline) <= time.time()
    where = place_of(alert, places) if alert else ""
    parts = []
    if error:
        parts.append(f'<div class="err" id="error">{html.escape(error)}</div>')
    if ok:
        parts.append(f'<div class="ok" id="ok">{html.escape(ok)}</div>')
    parts.append(
        f'<div class="card"><div class="msg">{html.escape(alert.message if alert else d.alert_id)}</div>'
        f'<div class="row"><span class="k">地点</span><span class="v">{html.escape(where)}</span></div>'
        f'<div class="row"><span class="k">设备</span><span class="v">{html.escape(alert.device_id if alert else "")}'
        f'</span></div><div class="row"><span class="k">告警时间</span><span class="v">'
        f'{_hm(alert.started_at) if alert else ""}</span></div></div>')
    parts.append(
        f'<div class="card"><div class="row"><span class="k">派给</span><span class="v">{html.escape(d.team_name)}'
        f'{("·" + html.escape(d.assignee)) if d.member_id else ""}</span></div>'
        f'<div class="row"><span class="k">接单期限</span><span class="v{" late" if late else ""}">{_hm(d.deadline)}'
        f'{"（已超时）" if late else ""}</span></div>'
        + (f'<div class="row"><span class="k">指挥中心备注</span><span class="v">{html.escape(d.note)}</span></div>'
           if d.note else "")
        + f'<div class="row"><span class="k">状态</span><span class="v" id="state">'
        f'{html.escape(STATE_LABEL.get(d.state, d.state))}</span></div></div>')
    parts.append(_reading(live, last, alert, trend))
    steps = [("接单", d.accepted_at), ("到场", d.arrived_at), ("反馈", d.done_at if d.state == "done" else None)]
    parts.append('<div class="card steps">' + "".join(
        f'<div class="step{" on" if at else ""}">{name}<small>{_hm(at) if at else "—"}</small></div>'
        for name, at in steps) + "</div>")
    if d.state == "sent":
        parts.append(f'<form class="card" method="post" action="{base}/accept{q}">'
                     '<label for="name">您的姓名（可选）</label>'
                     '<input type="text" id="name" name="name" maxlength="40" autocomplete="name">'
                     '<button type="submit" id="accept" class="go">接单</button></form>')
    elif d.state == "accepted":
        parts.append(f'<form class="card" method="post" action="{base}/arrive{q}">'
                     '<p class="hint">到达现场后请点击：</p>'
                     '<button type="submit" id="arrive" class="go">已到场</button></form>')
    elif d.state == "arrived":
        files = "".join(f'<input type="file" name="photo" id="photo{i}" accept="image/jpeg,image/png,image/webp">'
                        for i in range(1, MAX_PHOTOS + 1))
        parts.append(
            f'<form class="card" method="post" action="{base}/feedback{q}" enctype="multipart/form-data">'
            f'<div class="msg">现场反馈</div>{_options(CAUSES, "cause", "原因类别", kept.get("cause", ""))}'
            f'{_options(ACTIONS, "action", "处置措施", kept.get("action", ""))}'
            '<label for="text">情况说明</label><textarea id="text" name="text" maxlength="2000" '
            f'placeholder="发现了什么、做了什么、是否还需要其他部门">{html.escape(kept.get("text", ""))}</textarea>'
            f'<label>现场照片（最多 {MAX_PHOTOS} 张，JPEG/PNG/WebP）</label>{files}'
            + (_still_in_alarm(live, kept) if live is not None else "")
            + '<button type="submit" id="submit-feedback" class="go">提交反馈</button></form>')
    elif d.state == "cancelled":
        parts.append('<div class="card" id="cancelled"><div class="msg">该派单已由指挥中心撤回，无需处置。</div>'
                     '<p class="hint">如有疑问请联系街道指挥中心。</p></div>')
    else:
        parts.append(
            f'<div class="card" id="done"><div class="msg">已完成反馈</div>'
            f'<div class="row"><span class="k">原因</span><span class="v">{html.escape(d.cause or "")}</span></div>'
            f'<div class="row"><span class="k">措施</span><span class="v">{html.escape(d.action_taken or "")}'
            "</span></div>"
            f'<div class="row"><span class="k">照片</span><span class="v">{len(d.photos)} 张 '
            + " ".join(f'<a href="{base}/photos/{i}" id="photo-link{i}">照片{i}</a>'
                       for i in range(1, len(d.photos) + 1)) + "</span></div>"
            + (f"<p>{html.escape(d.feedback)}</p>" if d.feedback else "") + "</div>")
    return _page(title, COLOUR.get(sev, "#2b6fd6"), "".join(parts), status)


def _still_in_alarm(live: Live, kept: dict[str, str]) -> str:
    """While the device is in alarm, 处置完毕 needs a re-measurement and a stated reason."""
    unit = html.escape(live.unit)
    return ('<div class="err" id="still-alarm">设备仍在报警，请现场复测后填写复测读数；'
            '如仍要提交「处置完毕」，请写明理由。</div>'
            f'<label for="remeasure">现场复测读数（{unit or "数值"}）</label>'
            f'<input type="text" inputmode="decimal" id="remeasure" name="remeasure" required '
            f'value="{html.escape(kept.get("remeasure", ""))}">'
            '<label for="reason">仍提交处置完毕的理由</label><textarea id="reason" name="reason" maxlength="500" '
            f'required placeholder="例如：已关闭入户阀，复测为 0，探测器读数待燃气公司核查">'
            f'{html.escape(kept.get("reason", ""))}</textarea>')


def register_field_page(server: Flask, settings: Settings, store: Store, book: DispatchBook,
                        secret: Callable[[], bytes], places: Callable[[], Places], actions: AlertActions) -> None:
    ttl = settings.dispatch_link_ttl_s
    # Three photos at their bound, plus the form fields and multipart framing.
    max_body = MAX_PHOTOS * settings.dispatch_photo_max_bytes + 256 * 1024

    def resolve(token: str) -> Dispatch:
        alert_id, dispatch_id = read_link(secret(), token, ttl)
        d = book.get(dispatch_id)
        if d is None or d.alert_id != alert_id:
            raise Refused(403, "链接与派单不符，请使用消息中的原始链接。")
        return d

    influx: list[Any] = []

    def trend_of(alert: Any) -> str:
        """The alert's metric on its device since a little before the alert (InfluxDB, dashboard/trends.py)."""
        if alert is None or not alert.device_id or alert.metric not in {m.name for m in numeric_metrics(alert.kind)}:
            return ""
        if not influx:
            influx.append(client_for(settings, timeout_s=3.0))
        try:
            got = series(influx[0], alert.kind, [alert.metric], "device_id", alert.device_id,
                         epoch(alert.started_at) - TREND_BEFORE_S, time.time(), agg="max")
        except TrendError as exc:
            return sparkline(None, alert.threshold, str(exc))
        return sparkline(got[0] if got else None, alert.threshold)

    def show(token: str, d: Dispatch, **kw: Any) -> Response:
        got = store.condition_of(d.alert_id)
        alert = store.get(d.alert_id)
        return render(token, d, alert, places(), ft=form_token(secret(), token), live=book.live_reading(d.alert_id),
                      last=got[2] if got else None, trend=trend_of(alert), **kw)

    def link_name(token: str) -> str | None:
        try:
            return read_link(secret(), token, ttl)[1]
        except Refused:
            return None

    def form_ok(token: str, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(sent.encode(), form_token(secret(), token).encode())

    server.config["SC_LINK_NAME"] = link_name
    server.config["SC_FIELD_FORM_OK"] = form_ok

    def _kept() -> dict[str, str]:
        """The typed text and choices of a refused feedback (nothing when the body was too big to read)."""
        try:
            return {k: request.form.get(k, "")[:2000] for k in ("cause", "action", "text", "remeasure", "reason")}
        except RequestEntityTooLarge:
            return {}

    @server.get("/d/<token>")
    def field_page(token: str) -> Response:
        try:
            d = resolve(token)
        except Refused as exc:
            return refused_page(exc.message, exc.status)
        ok = OK_TEXT.get(request.args.get("ok", ""))
        return show(token, d, ok=ok)

    def act(token: str, step: Callable[[Dispatch], Dispatch]) -> Response:
        try:
            d = resolve(token)
        except Refused as exc:
            return refused_page(exc.message, exc.status)
        try:
            new = step(d)
        except Refused as exc:
            log.info("field action on %s refused: %s", d.dispatch_id, exc.message)
            return show(token, book.get(d.dispatch_id) or d, error=exc.message, status=exc.status, kept=_kept())
        return redirect(f"/d/{token}?ok={new.state}", code=303)  # type: ignore[return-value]

    @server.get("/d/<token>/photos/<int:n>")
    def field_photo(token: str, n: int) -> Response:
        try:
            d = resolve(token)
        except Refused as exc:
            return refused_page(exc.message, exc.status)
        p = photo_path(settings.data_path, d, n - 1)
        if p is None or not p.is_file():
            return refused_page(f"没有第 {n} 张照片。", 404)
        resp = send_file(p, mimetype=d.photos[n - 1]["type"], max_age=0)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def commanded(command: str, d: Dispatch, **args: Any) -> Dispatch:
        """A field step as a command to the alerts service; the dispatch as it is afterwards."""
        actions.must(command, d.assignee, "field", dispatch_id=d.dispatch_id, **args)
        return book.get(d.dispatch_id) or d

    @server.post("/d/<token>/accept")
    def field_accept(token: str) -> Response:
        return act(token, lambda d: commanded("accept", d, name=request.form.get("name")))

    @server.post("/d/<token>/arrive")
    def field_arrive(token: str) -> Response:
        return act(token, lambda d: commanded("arrive", d))

    @server.post("/d/<token>/feedback")
    def field_feedback(token: str) -> Response:
        def step(d: Dispatch) -> Dispatch:
            request.max_content_length = max_body
            try:
                form, files = request.form, request.files.getlist("photo")
            except RequestEntityTooLarge:
                mb = settings.dispatch_photo_max_bytes / 1048576
                raise Refused(413, f"上传内容过大：每张照片不超过 {mb:.0f} MB，"
                                   f"最多 {MAX_PHOTOS} 张。") from None
            photos = []
            for f in files:
                data = f.read(settings.dispatch_photo_max_bytes + 1)
                if not data and not f.filename:
                    continue  # an empty file field
                photos.append(data)
            return commanded("feedback", d, cause=form.get("cause", ""), action=form.get("action", ""),
                             text=form.get("text", ""), photos=[base64.b64encode(p).decode() for p in photos],
                             remeasure=form.get("remeasure"), reason=form.get("reason"))

        return act(token, step)
