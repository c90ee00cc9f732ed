"""Dispatch (派单): an alert assigned to a team or person, with a deadline, and the assignee's steps.

    dispatched → accepted (接单) → arrived (到场) → done (现场反馈: cause, action, text, ≤ 3 photos)

Every step changes the `dispatches` row and appends to the alert's timeline in ONE store
transaction, by a conditional UPDATE, so two phones pressing "接单" at once leave one acceptance
and a clear refusal. The assignee needs no account: the message carries a signed link
(`link_for`, itsdangerous with a secret in `SC_DATA_DIR/dispatch.secret`, 0600) that expires after
`SC_DISPATCH_LINK_TTL_S`, names this alert and this dispatch, and opens only the field page of it.
The link's token is written nowhere but into the outgoing message (logs and the audit name the
dispatch id). Feedback photos are kept re-encoded without their metadata (`clean_photo`: no GPS).

A dispatch nobody accepted by its deadline escalates like an unacknowledged alert
(`escalate_overdue`, run by the alert service): an `escalated` step and a message to the next tier
of the on-call roster. Messages go out through ONE function, `send_dispatch`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from alerts.rules import title_of
from alerts.store import Store
from alerts.teams import Member, Team
from alerts.timeline import Event
from core.contract import COMMUNITIES, Alert
from core.secrets import installation_key
from core.settings import Settings
from core.severity import label as severity_label
from core.timebase import beijing, epoch, iso

log = logging.getLogger(__name__)

# What the person on site found (also the archive's categories): one list, shown in this order.
CAUSES: tuple[str, ...] = (
    "燃气管道/阀门泄漏", "燃气具使用不当", "水管爆裂/渗漏", "电气线路/设备故障", "外力/施工破坏",
    "设备故障/误报", "传感器被遮挡/污染", "人为破坏", "演练/测试", "其他",
)
ACTIONS: tuple[str, ...] = (
    "关阀/停气", "关阀/停水", "断电", "维修处置", "更换设备", "开窗通风", "疏散人员", "移交相关部门",
    "现场核实无异常", "其他",
)
MAX_PHOTOS = 3
MAX_TEXT = 2000
MAX_PIXELS = 50_000_000  # a decompression bomb is refused before it is decoded
MAX_DEADLINE_S = 7 * 24 * 3600
PHOTO_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
LINK_SALT = "sc-dispatch-link"

OPEN_STATES = ("sent", "accepted", "arrived")
STATE_LABEL = {"sent": "待接单", "accepted": "已接单", "arrived": "已到场", "done": "已反馈", "cancelled": "已撤回"}


class Refused(Exception):
    """An action that changes nothing: `status` (400/403/404/409/410/413) and a message for people."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body  # more for a JSON answer (the live reading of a refused close: alerts/guard.py)


@dataclass(frozen=True, slots=True)
class Dispatch:
    dispatch_id: str
    alert_id: str
    team_id: str
    team_name: str
    team_type: str
    member_id: str | None
    assignee: str
    contacts: list[dict[str, str]]
    deadline: str
    created_at: str
    created_by: str
    note: str | None
    state: str
    accepted_at: str | None
    arrived_at: str | None
    done_at: str | None
    escalated_at: str | None
    cause: str | None
    action_taken: str | None
    feedback: str | None
    photos: list[dict[str, Any]]

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Dispatch:
        """From the store's row (contacts and photos as lists)."""
        d = dict(r)
        d["contacts"] = list(d["contacts"] or [])
        d["photos"] = list(d["photos"] or [])
        return cls(**d)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def overdue(self, now: float) -> bool:
        return self.state == "sent" and epoch(self.deadline) <= now

    def as_json(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]
        out["state_label"] = STATE_LABEL.get(self.state, self.state)
        out["photos"] = [{k: v for k, v in p.items() if k != "file"} for p in self.photos]
        return out


# ---------------------------------------------------------------- signed links


def link_secret(data_dir: Path) -> bytes:
    """The link-signing secret, made once per installation, readable by its owner only."""
    return installation_key(data_dir / "dispatch.secret")


def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=LINK_SALT)


def sign_link(secret: bytes, alert_id: str, dispatch_id: str) -> str:
    return str(_serializer(secret).dumps({"a": alert_id, "d": dispatch_id}))


def read_link(secret: bytes, token: str, max_age_s: float) -> tuple[str, str]:
    """(alert_id, dispatch_id) of a genuine, unexpired link; else Refused (403 forged, 410 expired)."""
    try:
        doc = _serializer(secret).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise Refused(410, "链接已过期，请联系指挥中心重新派单。") from None
    except BadSignature:
        raise Refused(403, "链接无效（签名不符），请使用短信/消息中的原始链接。") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("a"), str) or not isinstance(doc.get("d"), str):
        raise Refused(403, "链接无效。")
    return doc["a"], doc["d"]


def link_for(settings: Settings, d: Dispatch) -> str:
    return f"{settings.public_base_url}/d/{sign_link(link_secret(settings.data_path), d.alert_id, d.dispatch_id)}"


def form_token(secret: bytes, token: str) -> str:
    """The field page's per-link form token: rendered into its forms, checked on their POSTs, so the
    page's own posts are told from another site's where the browser sends no Fetch Metadata."""
    mac = hmac.new(secret, b"field-form\0" + token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


# ---------------------------------------------------------------- photos


def sniff(data: bytes) -> str | None:
    """The image type by its first bytes (not by any name): jpeg, png, webp or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_photo(data: bytes, max_bytes: int) -> str:
    """The photo's type when it is a real, whole image within the bounds; else Refused."""
    from PIL import Image

    if not data:
        raise Refused(400, "照片是空文件。")
    if len(data) > max_bytes:
        raise Refused(413, f"照片太大（{len(data) / 1048576:.1f} MB），每张不超过 {max_bytes / 1048576:.0f} MB。")
    kind = sniff(data)
    if kind is None:
        raise Refused(415, "上传的文件不是图片（仅支持 JPEG、PNG、WebP 照片）。")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if (im.format or "").lower() != kind:
                    raise Refused(415, "图片内容与其格式不符。")
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise Refused(413, f"图片像素过大（{w}×{h}）。")
                im.load()  # decodes every byte: a truncated or corrupt file fails here
    except Refused:
        raise
    except Exception:
        raise Refused(415, "图片已损坏或无法识别。") from None
    return kind


def clean_photo(data: bytes, kind: str) -> bytes:
    """The photo as it is kept and served: turned upright as its EXIF orientation says, then encoded
    afresh with no metadata (EXIF with the phone's GPS position and serial, XMP, comments), only the
    colour profile kept. `data` has passed `check_photo`."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as src:
        im = ImageOps.exif_transpose(src) or src
        icc = src.info.get("icc_profile")
        if kind == "jpeg" and im.mode not in ("L", "RGB", "CMYK"):
            im = im.convert("RGB")
        im.info = {}  # nothing of the original rides along into the new file
        out = io.BytesIO()
        extra: dict[str, Any] = {"icc_profile": icc} if icc else {}
        if kind == "jpeg":
            im.save(out, "JPEG", quality=90, **extra)
        elif kind == "webp":
            im.save(out, "WEBP", quality=90, **extra)
        else:
            im.save(out, "PNG", **extra)
    return out.getvalue()


def photo_dir(data_dir: Path, dispatch_id: str) -> Path:
    return data_dir / "dispatch" / "photos" / dispatch_id


def photo_path(data_dir: Path, d: Dispatch, index: int) -> Path | None:
    if not 0 <= index < len(d.photos):
        return None
    return data_dir / "dispatch" / "photos" / d.dispatch_id / str(d.photos[index]["file"])


# ---------------------------------------------------------------- sending


def send_dispatch(settings: Settings, alert: Alert, to: list[Any], text: str, *, event: str,
                  dispatch_id: str, link: str | None) -> dict[str, Any]:
    """THE way a dispatch message leaves: one durable outbox entry, delivered by the alert service
    through every notification channel that reaches each person (alerts/channels/), with retries,
    rate limits and a `notified` step per delivery. Returns the entry as queued."""
    from alerts.channels import queue_message

    title = {"dispatch_escalated": "【派单超时】请协调", "dispatch_reopened": "【复燃】请立即返回现场"}.get(
        event, "【派单】请处置")
    nid = queue_message(settings, to, text, link, title=title, alert_id=alert.alert_id, community=alert.community,
                        severity=alert.severity, event=event, extra={"dispatch_id": dispatch_id})
    return {"id": nid, "event": event, "dispatch_id": dispatch_id, "alert_id": alert.alert_id, "link": link}


Places = tuple[dict[str, str], dict[str, str]]  # (compound id → name, device id → install place)


def place_of(alert: Alert, places: Places | None = None) -> str:
    """Where, in words people use: community, then the device's compound, building and install
    place (or the compound's name), falling back to ids only when the names are not loaded."""
    compounds, devices = places or ({}, {})
    where = devices.get(alert.device_id) or compounds.get(alert.compound_id) or alert.compound_id
    return f"{COMMUNITIES.get(alert.community, alert.community)} {where}"


def _hm(iso_text: str) -> str:
    return beijing(epoch(iso_text)).strftime("%m-%d %H:%M")


def dispatch_text(alert: Alert, d: Dispatch, link: str, places: Places | None = None) -> str:
    what = title_of(alert.rule)
    said = alert.message if what in (alert.message or "") else f"{what}，{alert.message}"
    return (f"[{severity_label(alert.severity)}预警·派单] {place_of(alert, places)}：{said}。"
            f"派给 {d.team_name}{'·' + d.assignee if d.member_id else ''}，请于 {_hm(d.deadline)} 前接单并到场处置。"
            f"{('指挥中心备注：' + d.note + '。') if d.note else ''}接单与反馈：{link}")


# ---------------------------------------------------------------- the book of dispatches


class DispatchBook:
    """Dispatches in the alert store (in the same transactions as their timeline steps)."""

    def __init__(self, store: Store, settings: Settings, places: Callable[[], Places] | None = None) -> None:
        self.store = store
        self.settings = settings
        self._places = places  # names for the messages (the dashboard's cache; None: ids)
        self._policy: Any = None  # the close guard's hold-offs, read on first use (alerts/guard.py)

    def places(self) -> Places | None:
        try:
            return self._places() if self._places else None
        except Exception:  # names are a courtesy: a message goes out with ids rather than not at all
            log.exception("place names not available")
            return None

    def get(self, dispatch_id: str) -> Dispatch | None:
        r = self.store.dispatch(dispatch_id)
        return Dispatch.from_row(r) if r else None

    def for_alert(self, alert_id: str) -> list[Dispatch]:
        return [Dispatch.from_row(r) for r in self.store.dispatches_for(alert_id)]

    def open_dispatches(self, community: str | None = None) -> list[Dispatch]:
        return [Dispatch.from_row(r) for r in self.store.open_dispatches(OPEN_STATES, community)]

    # -- the operator's step

    def create(self, alert_id: str, team: Team, member: Member | None, deadline: str, by: str,
               note: str | None, now: float) -> Dispatch:
        """Dispatch an alert; the message with its signed link is sent (and noted on the timeline)."""
        alert = self.store.get(alert_id)
        if alert is None:
            raise Refused(404, f"no alert {alert_id}")
        if not team.serves(alert.community):
            raise Refused(400, f"team {team.team_id} ({team.name}) does not serve {alert.community}")
        dl = epoch(deadline)
        if dl <= now:
            raise Refused(400, "the deadline is in the past")
        if dl - now > MAX_DEADLINE_S:
            raise Refused(400, "the deadline is more than 7 days ahead")
        people = [member] if member else list(team.members)
        contacts = [{"name": m.name, **m.contacts} for m in people]
        did = f"d-{uuid.uuid4().hex[:12]}"
        at = iso(now)

        def check(archived: bool) -> None:
            if archived:
                raise Refused(409, f"alert {alert_id} is archived")

        d = Dispatch.from_row(self.store.dispatch_insert(
            {"dispatch_id": did, "alert_id": alert_id, "team_id": team.team_id, "team_name": team.name,
             "team_type": team.type, "member_id": member.member_id if member else None,
             "assignee": member.name if member else team.name, "contacts": contacts, "deadline": iso(dl),
             "created_at": at, "created_by": by, "note": note},
            (Event.DISPATCHED, at, note, {
                "dispatch_id": did, "team": team.team_id, "team_name": team.name, "team_type": team.type,
                "member": member.member_id if member else None, "assignee": member.name if member else team.name,
                "deadline": iso(dl)}), by, check))
        if not self.settings.public_url:
            log.warning("SC_PUBLIC_URL is not set: the field link of %s points at %s, which a phone "
                        "outside this machine cannot open", did, self.settings.public_base_url)
        link = link_for(self.settings, d)
        send_dispatch(self.settings, alert, contacts, dispatch_text(alert, d, link, self.places()), event="dispatch",
                      dispatch_id=did, link=link)
        self.store.record(alert_id, Event.NOTIFIED, iso(time.time()), data={
            "dispatch_id": did, "to": [c["name"] for c in contacts], "channel": "outbox",
            "delivered": "queued"})
        return d

    def cancel(self, dispatch_id: str, by: str, note: str | None, now: float) -> Dispatch:
        """The operator takes an open dispatch back (e.g. to send another team); its link then
        only shows that it was taken back."""
        return self._advance(dispatch_id, OPEN_STATES, "cancelled", "done_at", Event.DISPATCH_CANCELLED, now,
                             note=note, by=by)

    # -- the assignee's steps (from the field page)

    def _advance(self, dispatch_id: str, from_states: tuple[str, ...], to_state: str, stamp: str, event: Event,
                 now: float, extra_sets: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                 note: str | None = None, inside: Any = None, by: str | None = None) -> Dispatch:
        at = iso(now)
        sets = {"state": to_state, stamp: at, **(extra_sets or {})}

        def check(cur: Mapping[str, Any] | None) -> None:
            if cur is None:
                raise Refused(404, "派单不存在。")
            if cur["state"] not in from_states:
                raise Refused(409, f"该派单当前为「{STATE_LABEL.get(cur['state'], cur['state'])}」，不能重复操作。")

        # The step names the dispatch and its team; without `by` it is signed by whoever accepted the
        # dispatch (else its assignee). `inside` (e.g. write the photos): an error there rolls the step back.
        return Dispatch.from_row(self.store.dispatch_advance(dispatch_id, from_states, sets, check,
                                                             (event, at, note, data), by, inside))

    def accept(self, dispatch_id: str, now: float, name: str | None = None) -> Dispatch:
        """`name`: who took it, when a whole team was sent the link (recorded as "name（team）")."""
        name = (name or "").strip()[:40]
        d = self.get(dispatch_id)
        by = f"{name}（{d.assignee}）" if name and d is not None and name != d.assignee else None
        return self._advance(dispatch_id, ("sent",), "accepted", "accepted_at", Event.ACCEPTED, now, by=by)

    def arrive(self, dispatch_id: str, now: float) -> Dispatch:
        return self._advance(dispatch_id, ("accepted",), "arrived", "arrived_at", Event.ARRIVED, now)

    def live_reading(self, alert_id: str) -> Any:
        """The alert's live reading while its device is still in alarm (alerts/guard.py), else None."""
        from alerts.guard import Policy, device_danger

        alert = self.store.get(alert_id)
        if alert is None:
            return None
        if self._policy is None:
            self._policy = Policy.of(self.settings)
        return device_danger(self.store, alert, self._policy)

    def feedback(self, dispatch_id: str, cause: str, action: str, text: str, photos: list[bytes],
                 now: float, *, remeasure: str | None = None, reason: str | None = None) -> Dispatch:
        """Close a dispatch with what was found. Everything is checked before anything is written; a
        bad photo refuses the whole feedback and leaves no file and no step.

        While the device is still in alarm (the close guard, alerts/guard.py), a feedback — 处置完毕 —
        is refused unless it carries a re-measurement on site (复测, a number) and a stated reason;
        both, and the live reading, are written on the feedback step."""
        d0 = self.get(dispatch_id)
        live = self.live_reading(d0.alert_id) if d0 is not None and d0.is_open else None
        extra: dict[str, Any] = {}
        if live is not None:
            try:
                measured = float((remeasure or "").strip())
            except ValueError:
                measured = None
            if measured is None or not (reason or "").strip():
                raise Refused(409, f"设备仍在报警：最新读数 {live.words()}。请现场复测并填写复测读数，"
                                   "并写明仍提交「处置完毕」的理由。")
            extra = {"remeasure": measured, "reason": reason.strip() if reason else None, "override": True,
                     "live_value": live.value, "live_at": live.at}
        if cause not in CAUSES:
            raise Refused(400, "请选择原因类别。")
        if action not in ACTIONS:
            raise Refused(400, "请选择处置措施。")
        text = (text or "").strip()
        if len(text) > MAX_TEXT:
            raise Refused(400, f"情况说明不超过 {MAX_TEXT} 字。")
        if len(photos) > MAX_PHOTOS:
            raise Refused(400, f"最多上传 {MAX_PHOTOS} 张照片。")
        kinds = [check_photo(p, self.settings.dispatch_photo_max_bytes) for p in photos]
        photos = [clean_photo(p, k) for p, k in zip(photos, kinds, strict=True)]
        folder = photo_dir(self.settings.data_path, dispatch_id)
        meta = []
        for i, (data, kind) in enumerate(zip(photos, kinds, strict=True), start=1):
            meta.append({"file": f"{i}.{'jpg' if kind == 'jpeg' else kind}", "type": PHOTO_TYPES[kind],
                         "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        written: list[Path] = []

        def write_photos() -> None:
            if not photos:
                return
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(folder, 0o700)
            for data, m in zip(photos, meta, strict=True):
                p = folder / m["file"]
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                written.append(p)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)

        public = [{k: v for k, v in m.items() if k != "file"} for m in meta]
        try:
            return self._advance(
                dispatch_id, ("accepted", "arrived"), "done", "done_at", Event.FEEDBACK, now,
                extra_sets={"cause": cause, "action_taken": action, "feedback": text or None,
                            "photos": meta},
                data={"cause": cause, "action": action, "photos": public, **extra}, note=text or None,
                inside=write_photos)
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise

    # -- escalation of a dispatch nobody accepted

    def reopened(self, alert: Alert, now: float | None = None) -> list[Dispatch]:
        """The alert came back within its watch (复燃): every team dispatched to it (but one taken back)
        is told again with its link, and a dispatch already fed back is open again (已接单): the team
        goes back and feeds back anew, and the alert cannot be archived meanwhile."""
        now = time.time() if now is None else now
        told = []
        for d in self.for_alert(alert.alert_id):
            if d.state == "cancelled":
                continue
            r = self.store.dispatch_reopen(d.dispatch_id)
            assert r is not None
            again = Dispatch.from_row(r)
            link = link_for(self.settings, again)
            text = (f"[复燃·重新告警] {place_of(alert, self.places())}：{alert.message}。此前派给 {d.team_name}"
                    f"{'·' + d.assignee if d.member_id else ''} 的警情再次报警，请立即返回现场复测处置。"
                    f"接单与反馈：{link}")
            send_dispatch(self.settings, alert, d.contacts, text, event="dispatch_reopened",
                          dispatch_id=d.dispatch_id, link=link)
            self.store.record(alert.alert_id, Event.NOTIFIED, iso(now), data={
                "dispatch_id": d.dispatch_id, "to": [c.get("name") for c in d.contacts], "channel": "outbox",
                "delivered": "queued", "event": "reopened"})
            told.append(again)
        return told

    def escalate_overdue(self, roster: Any, now: float) -> list[Dispatch]:
        """Every dispatch still unaccepted past its deadline: an `escalated` step (once) and a message
        to the next tier of the on-call roster, as for an unacknowledged alert."""
        done = []
        for r in self.store.overdue_dispatches(iso(now)):
            d = Dispatch.from_row(r)
            alert = self.store.get(d.alert_id)
            tier = min((alert.escalation_tier or 1) + 1 if alert else 2,
                       max(roster.max_tier(alert.community), 1) if alert else 2)
            contacts = [p.as_json() for p in roster.contacts(alert.community, tier)] if alert else []
            row = self.store.dispatch_escalate(
                d.dispatch_id, iso(now), f"派单超时未接单：{d.team_name}（期限 {_hm(d.deadline)}）",
                {"dispatch_id": d.dispatch_id, "reason": "dispatch_not_accepted", "tier": tier,
                 "to": [c.get("name") for c in contacts]})
            if row is None:
                continue  # accepted meanwhile, or another process escalated it
            if alert is not None:
                text = (f"[派单超时] {d.team_name}{'·' + d.assignee if d.member_id else ''} 未在 {_hm(d.deadline)} "
                        f"前接单：{place_of(alert, self.places())} {alert.message}。请协调处置。")
                send_dispatch(self.settings, alert, contacts, text, event="dispatch_escalated",
                              dispatch_id=d.dispatch_id, link=None)
            log.warning("dispatch %s of alert %s not accepted by %s: escalated to tier %d",
                        d.dispatch_id, d.alert_id, d.deadline, tier)
            done.append(Dispatch.from_row(row))
        return done
