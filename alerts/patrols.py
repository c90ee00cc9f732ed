"""Patrols and hazards (巡检, 隐患排查): the plan file, when a patrol is due or missed, check-ins and hazards.

A patrol plan (`alerts/patrols.yaml`, `SC_PATROLS_FILE`) covers a compound or a pipeline segment of a
community: who walks it (a person of the on-call roster or a team of the dispatch teams), how often
(`every: 8h` / `1d`), from which day (`start`, Beijing), and its checkpoints (name, WGS-84 point,
tolerance in metres). Time is cut into rounds of `every` from Beijing midnight of `start`; a round is
done when every checkpoint has a check-in inside it. A round that ended undone is missed: the
`patrol` trigger (alerts/triggers/patrol.py) raises an alert when the latest ended round is missed,
its value the number of missed rounds in a row (the rule's level makes a second miss yellow), and it
clears once the round in progress is done.

A check-in (a staff command, alerts/command/) records where the worker stood — refused when farther
from the checkpoint than its tolerance — the time, up to 3 photos and what was found; a finding opens
a hazard (隐患) with a rectification deadline (整改期限): open → rectified (with photos) → closed, and
overdue while open past its deadline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from alerts.configfile import ConfigError, LineDict, line_of, load_yaml
from alerts.roster import parse_roster
from alerts.teams import TeamsError, load_teams, teams_path
from core.contract import COMMUNITIES
from core.timebase import BEIJING, beijing, epoch, iso

BUNDLED_PLANS = Path(__file__).with_name("patrols.yaml")
EVERY_RE = re.compile(r"^\s*(\d+)\s*([hd])\s*$")
UNIT_S = {"h": 3600, "d": 86400}
TOLERANCE_M = (5.0, 500.0)  # a tolerance outside this is a typo (or GPS cannot tell it apart)
LOOK_BACK = 12  # rounds looked at behind the one in progress: "missed N in a row" counts up to this
HAZARD_STATES = ("open", "rectified", "closed")
HAZARD_STATE_LABEL = {"open": "待整改", "rectified": "已整改待销号", "closed": "已销号"}
DEADLINE_DAYS = 7  # the rectification deadline when the worker names none
MAX_DEADLINE_DAYS = 90
MAX_FINDING = 1000


@dataclass(frozen=True, slots=True)
class Checkpoint:
    name: str
    lon: float
    lat: float
    tolerance_m: float


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    name: str
    community: str
    compound_id: str  # "" for a pipeline segment
    segment: str  # "" for a compound
    who_kind: str  # "person" | "team"
    who: str  # the roster person id or the team id
    who_name: str  # as people say it
    workers: frozenset[str]  # ids and names of whoever may walk it (a team: its members too)
    every_s: int
    start: date
    checkpoints: tuple[Checkpoint, ...]

    @property
    def anchor(self) -> float:
        """Epoch seconds of Beijing midnight of `start`: round 0 begins here."""
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=BEIJING).timestamp()

    @property
    def place(self) -> str:
        return self.segment or self.compound_id

    def checkpoint(self, name: str) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.name == name), None)

    def walked_by(self, *names: str | None) -> bool:
        return any(n and n in self.workers for n in names)

    def every_words(self) -> str:
        if self.every_s % 86400 == 0:
            n = self.every_s // 86400
            return "每天" if n == 1 else f"每 {n} 天"
        return f"每 {self.every_s // 3600} 小时"


@dataclass(frozen=True, slots=True)
class Plans:
    plans: dict[str, Plan]
    source: str = ""

    def get(self, plan_id: str) -> Plan | None:
        return self.plans.get(plan_id)

    def __iter__(self) -> Any:
        return iter(self.plans.values())


# ---------------------------------------------------------------- the plan file


def parse_plans(path: Path, *, roster_file: str | Path | None = None, teams_file: str | None = None) -> Plans:
    """The plans of a file; ConfigError with every problem as `file:line: reason`."""
    from alerts.roster import BUNDLED_ROSTER

    doc = load_yaml(path)
    problems: list[tuple[int, str]] = []
    roster = parse_roster(Path(roster_file) if roster_file else BUNDLED_ROSTER)
    people = {p.pid: p for p in roster.people() if p.pid}
    try:
        teams = load_teams(teams_file)
    except TeamsError as exc:
        raise ConfigError(path, [(0, f"the teams file {teams_path(teams_file)} is refused: {exc}")]) from None
    raw = doc.get("plans")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(path, [(line_of(doc, "plans"), "the file needs `plans:`, a list of patrol plans")])
    plans: dict[str, Plan] = {}
    for i, item in enumerate(raw):
        line = line_of(raw, i)
        if not isinstance(item, LineDict):
            problems.append((line, "a plan is a mapping (id, name, community, who, every, start, checkpoints)"))
            continue

        def bad(key: str, reason: str, item: LineDict = item) -> None:
            problems.append((line_of(item, key), reason))

        pid = item.get("id")
        if not isinstance(pid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", pid):
            bad("id", "id: a short ASCII id (letters, digits, - and _)")
            continue
        if pid in plans:
            bad("id", f"plan {pid!r} is defined twice")
        unknown = set(item) - {"id", "name", "community", "compound", "segment", "who", "every", "start",
                               "checkpoints"}
        if unknown:
            bad(sorted(unknown)[0], f"plan {pid}: unknown key(s) {', '.join(sorted(unknown))}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            bad("name", f"plan {pid}: name: what people call this patrol")
        community = item.get("community")
        if community not in COMMUNITIES:
            bad("community", f"plan {pid}: community must be one of {', '.join(COMMUNITIES)}")
        compound, segment = item.get("compound"), item.get("segment")
        if bool(compound) == bool(segment) or not isinstance(compound or segment, str):
            bad("compound" if compound else "segment" if segment else "id",
                f"plan {pid}: give either `compound:` (a compound id) or `segment:` (a pipeline segment), one of them")
        who = item.get("who")
        who_kind, who_id, who_name, workers = "", "", "", frozenset[str]()
        if not isinstance(who, dict) or len(who) != 1 or next(iter(who)) not in ("person", "team"):
            bad("who", f"plan {pid}: who is {{person: <id in the on-call roster>}} or {{team: <id in teams.yaml>}}")
        else:
            who_kind, who_id = next(iter(who.items()))
            who_id = str(who_id)
            if who_kind == "person":
                p = people.get(who_id)
                if p is None:
                    bad("who", f"plan {pid}: no person {who_id!r} in the on-call roster "
                               f"(one of {', '.join(sorted(people))})")
                else:
                    who_name, workers = p.name, frozenset({who_id, p.name})
            else:
                t = teams.get(who_id)
                if t is None:
                    bad("who", f"plan {pid}: no team {who_id!r} in {teams.source or 'the teams file'} "
                               f"(one of {', '.join(teams.teams)})")
                else:
                    who_name = t.name
                    workers = frozenset({t.team_id, t.name, *(m.member_id for m in t.members),
                                         *(m.name for m in t.members)})
        every = item.get("every")
        m = EVERY_RE.match(str(every)) if isinstance(every, str | int) and not isinstance(every, bool) else None
        every_s = int(m.group(1)) * UNIT_S[m.group(2)] if m else 0
        if not every_s:
            bad("every", f"plan {pid}: every is a number of hours or days, e.g. 8h or 1d")
        start = None
        try:
            start = date.fromisoformat(str(item.get("start")))
        except ValueError:
            bad("start", f"plan {pid}: start is the day the plan takes effect (Beijing), e.g. 2026-12-01")
        cps = item.get("checkpoints")
        checkpoints: list[Checkpoint] = []
        if not isinstance(cps, list) or not cps:
            bad("checkpoints", f"plan {pid}: checkpoints is a list of {{name, lon, lat, tolerance_m}}")
            cps = []
        for j, cp in enumerate(cps):
            cline = line_of(cps, j)
            if not isinstance(cp, dict):
                problems.append((cline, f"plan {pid}: a checkpoint is {{name, lon, lat, tolerance_m}}"))
                continue
            cname, lon, lat, tol = cp.get("name"), cp.get("lon"), cp.get("lat"), cp.get("tolerance_m")
            if not isinstance(cname, str) or not cname.strip():
                problems.append((cline, f"plan {pid}: checkpoint {j + 1} needs a name"))
                continue
            if any(c.name == cname for c in checkpoints):
                problems.append((cline, f"plan {pid}: checkpoint {cname!r} is named twice"))
            nums = [v for v in (lon, lat, tol) if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(nums) != 3:
                problems.append((cline, f"plan {pid}: checkpoint {cname}: lon, lat and tolerance_m must be numbers"))
                continue
            if not (73 <= float(lon) <= 136 and 3 <= float(lat) <= 54):  # type: ignore[arg-type]
                problems.append((cline, f"plan {pid}: checkpoint {cname}: ({lon}, {lat}) is no WGS-84 lon/lat in "
                                        "China (lon first, then lat, in degrees)"))
                continue
            if not TOLERANCE_M[0] <= float(tol) <= TOLERANCE_M[1]:  # type: ignore[arg-type]
                problems.append((cline, f"plan {pid}: checkpoint {cname}: tolerance_m must be "
                                        f"{TOLERANCE_M[0]:g}..{TOLERANCE_M[1]:g} metres"))
                continue
            checkpoints.append(Checkpoint(cname.strip(), float(lon), float(lat), float(tol)))  # type: ignore[arg-type]
        if problems and problems[-1][0] >= line:
            continue  # this plan has a problem: it is not kept (the whole file is refused anyway)
        assert start is not None and isinstance(community, str)
        plans[pid] = Plan(pid, str(name).strip(), community, str(compound or ""), str(segment or ""), who_kind,
                          who_id, who_name, workers, every_s, start, tuple(checkpoints))
    if problems:
        raise ConfigError(path, sorted(problems))
    return Plans(plans, str(path))


def plans_path(plans_file: str | None) -> Path:
    return Path(plans_file).resolve() if plans_file else BUNDLED_PLANS


def load_plans(settings: Any) -> Plans:
    """The plans of `SC_PATROLS_FILE` (or the bundled sample), checked against the roster and teams in force."""
    return parse_plans(plans_path(settings.patrols_file), roster_file=settings.alerts_roster_file,
                       teams_file=settings.dispatch_teams_file)


def plans_for_report(settings: Any) -> Plans:
    """The plans in force for the period report: none when SC_PATROLS_FILE is unset or refused (the
    report keeps every other number; `smartcommunity patrols check` says what is wrong)."""
    if not settings.patrols_file:
        return Plans({})
    try:
        return load_plans(settings)
    except ConfigError:
        return Plans({})


# ---------------------------------------------------------------- rounds: due, done, missed


@dataclass(frozen=True, slots=True)
class Status:
    """Where a plan stands at one moment."""

    plan: Plan
    started: bool  # the plan's first round has begun
    round_start: float
    round_end: float  # the round in progress must be done by then (its due time)
    done: frozenset[str]  # checkpoints checked in this round
    missed: int  # ended rounds in a row, up to the one in progress, left undone (0 once this round is done)

    @property
    def complete(self) -> bool:
        return self.done >= {c.name for c in self.plan.checkpoints}

    @property
    def overdue(self) -> bool:
        return self.missed > 0

    @property
    def todo(self) -> list[Checkpoint]:
        return [c for c in self.plan.checkpoints if c.name not in self.done]


def status(plan: Plan, checkins: Iterable[tuple[str, float]], now: float) -> Status:
    """The plan at `now` given its check-ins (checkpoint, epoch seconds): the round in progress, what
    is done in it, and how many ended rounds in a row were missed (0 when this round is done)."""
    anchor, every = plan.anchor, plan.every_s
    if now < anchor:
        return Status(plan, False, anchor, anchor + every, frozenset(), 0)
    k = int((now - anchor) // every)
    want = {c.name for c in plan.checkpoints}
    rounds: dict[int, set[str]] = {}
    for name, at in checkins:
        if anchor <= at <= now:
            rounds.setdefault(int((at - anchor) // every), set()).add(name)
    done_now = frozenset(rounds.get(k, set()))
    missed = 0
    if not done_now >= want:
        j = k - 1
        while j >= 0 and missed < LOOK_BACK and not rounds.get(j, set()) >= want:
            missed += 1
            j -= 1
    start = anchor + k * every
    return Status(plan, True, start, start + every, done_now, missed)


def rounds_in(plan: Plan, lo: float, hi: float, checkins: Iterable[tuple[str, float]]) -> tuple[int, int]:
    """(rounds that ended in (lo, hi], how many of them were done): the report's patrol completion (the
    round of a month's last day ends at the next month's first midnight: it is this month's)."""
    anchor, every = plan.anchor, plan.every_s
    want = {c.name for c in plan.checkpoints}
    got: dict[int, set[str]] = {}
    for name, at in checkins:
        if at >= anchor:
            got.setdefault(int((at - anchor) // every), set()).add(name)
    first = max(0, int((max(lo, anchor) - anchor) // every) - 1)
    due = done = 0
    k = first
    while anchor + (k + 1) * every <= hi:
        end = anchor + (k + 1) * every
        if end > lo:
            due += 1
            done += got.get(k, set()) >= want
        k += 1
    return due, done


class PatrolBook:
    """What the `patrol` trigger looks at: the plans in force and the recent check-ins of each.

    The alerts service fills it (the plans at start and when the file changes, the check-ins from the
    store at start and from each check-in command); the trigger only reads it."""

    def __init__(self) -> None:
        self.plans = Plans({})
        self.checkins: dict[str, list[tuple[str, float]]] = {}

    def set_plans(self, plans: Plans) -> None:
        self.plans = plans

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for r in rows:
            self.add(r["plan_id"], r["checkpoint"], epoch(r["at"]))

    def add(self, plan_id: str, checkpoint: str, at: float) -> None:
        got = self.checkins.setdefault(plan_id, [])
        got.append((checkpoint, at))
        plan = self.plans.get(plan_id)
        keep_s = (LOOK_BACK + 2) * (plan.every_s if plan else 86400)
        if len(got) > 64:  # only the rounds the trigger looks at
            got[:] = [(c, t) for c, t in got if t >= at - keep_s]

    def status(self, plan: Plan, now: float) -> Status:
        return status(plan, self.checkins.get(plan.plan_id, ()), now)

    @staticmethod
    def since(plans: Plans, now: float) -> str:
        """From when the store's check-ins matter to the book (the longest look back of any plan)."""
        longest = max((p.every_s for p in plans), default=86400)
        return iso(now - (LOOK_BACK + 2) * longest)


# ---------------------------------------------------------------- check-ins and hazards


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Metres between two WGS-84 points (on the ellipsoid)."""
    from pyproj import Geod

    return float(Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)[2])


def photos_dir(data_dir: Path, what: str, ident: str) -> Path:
    """Where the photos of a check-in or of a hazard's rectification are kept (0700, files 0600)."""
    return data_dir / "patrols" / "photos" / what / ident


def prepare_photos(photos: list[str] | None, max_bytes: int) -> list[tuple[bytes, dict[str, Any]]]:
    """Base64 photos as the field page sends them, checked by content and re-encoded without metadata
    (alerts/dispatch.py); Refused names what is wrong."""
    from alerts.dispatch import MAX_PHOTOS, PHOTO_TYPES, Refused, check_photo, clean_photo

    try:
        raw = [base64.b64decode(p, validate=True) for p in photos or []]
    except (binascii.Error, TypeError, ValueError):
        raise Refused(400, "照片格式不对（应为 base64）。") from None
    if len(raw) > MAX_PHOTOS:
        raise Refused(400, f"最多上传 {MAX_PHOTOS} 张照片。")
    out = []
    for i, data in enumerate(raw, start=1):
        kind = check_photo(data, max_bytes)
        clean = clean_photo(data, kind)
        out.append((clean, {"file": f"{i}.{'jpg' if kind == 'jpeg' else kind}", "type": PHOTO_TYPES[kind],
                            "bytes": len(clean), "sha256": hashlib.sha256(clean).hexdigest()}))
    return out


def write_photos(folder: Path, photos: list[tuple[bytes, dict[str, Any]]], prefix: str = "") -> list[dict[str, Any]]:
    """Write checked photos (0600) and return their metadata with the file names they got."""
    if not photos:
        return []
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    metas = []
    for data, meta in photos:
        m = {**meta, "file": prefix + meta["file"]}
        fd = os.open(folder / m["file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        metas.append(m)
    return metas


@dataclass(slots=True)
class CheckIn:
    """A check-in as the phone sends it."""

    plan_id: str
    checkpoint: str
    lon: float
    lat: float
    accuracy_m: float | None = None
    findings: str = ""
    deadline_days: int | None = None
    photos: list[str] = field(default_factory=list)


def check_in(store: Any, plans: Plans, c: CheckIn, by: str, now: float, data_dir: Path, photo_max_bytes: int,
             added: Callable[[str, str, float], None] | None = None) -> dict[str, Any]:
    """Record a check-in (and open the hazard its finding names); Refused, with nothing written, when the
    plan or checkpoint is unknown or the worker stands farther from the checkpoint than its tolerance."""
    from alerts.dispatch import Refused

    plan = plans.get(c.plan_id)
    if plan is None:
        raise Refused(404, f"没有巡检计划 {c.plan_id}。")
    cp = plan.checkpoint(c.checkpoint)
    if cp is None:
        raise Refused(404, f"巡检计划「{plan.name}」没有打卡点「{c.checkpoint}」。")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (c.lon, c.lat)):
        raise Refused(400, "没有取得定位：请允许浏览器使用位置信息后再打卡。")
    d = distance_m(cp.lon, cp.lat, float(c.lon), float(c.lat))
    if d > cp.tolerance_m:
        raise Refused(409, f"距离打卡点「{cp.name}」{d:.0f} 米，超出允许的 {cp.tolerance_m:g} 米，"
                           "请到达打卡点后再打卡。", {"distance_m": round(d, 1), "tolerance_m": cp.tolerance_m})
    findings = (c.findings or "").strip()
    if len(findings) > MAX_FINDING:
        raise Refused(400, f"发现的问题不超过 {MAX_FINDING} 字。")
    days = DEADLINE_DAYS if c.deadline_days in (None, "") else c.deadline_days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DEADLINE_DAYS:
        raise Refused(400, f"整改期限为 1 至 {MAX_DEADLINE_DAYS} 天。")
    photos = prepare_photos(c.photos, photo_max_bytes)
    checkin_id = f"k-{uuid.uuid4().hex[:12]}"
    metas = write_photos(photos_dir(data_dir, "checkins", checkin_id), photos)
    at = iso(now)
    hazard = None
    if findings:
        hazard = {"hazard_id": f"h-{uuid.uuid4().hex[:12]}", "checkin_id": checkin_id, "plan_id": plan.plan_id,
                  "checkpoint": cp.name, "community": plan.community, "compound_id": plan.compound_id or None,
                  "lon": cp.lon, "lat": cp.lat, "finding": findings, "found_by": by, "found_at": at,
                  "deadline": iso(now + days * 86400), "state": "open",
                  "photos": [{**m, "stage": "found", "dir": f"checkins/{checkin_id}"} for m in metas]}
    row = {"checkin_id": checkin_id, "plan_id": plan.plan_id, "checkpoint": cp.name, "community": plan.community,
           "at": at, "by": by, "lon": float(c.lon), "lat": float(c.lat),
           "accuracy_m": float(c.accuracy_m) if isinstance(c.accuracy_m, int | float) else None,
           "distance_m": round(d, 1), "findings": findings or None, "photos": metas,
           "hazard_id": hazard["hazard_id"] if hazard else None}
    try:
        store.checkin_insert(row, hazard)
    except BaseException:  # nothing half-done: no photos without their check-in
        shutil.rmtree(photos_dir(data_dir, "checkins", checkin_id), ignore_errors=True)
        raise
    if added is not None:
        added(plan.plan_id, cp.name, now)
    return {"checkin": row, "hazard": hazard}


def advance_hazard(store: Any, hazard_id: str, to: str, by: str, note: str, photos: list[str] | None, now: float,
                   data_dir: Path, photo_max_bytes: int) -> dict[str, Any]:
    """Rectify (整改, photos required) or close (销号) a hazard; Refused with the reason otherwise."""
    from alerts.dispatch import Refused

    h = store.hazard(hazard_id)
    if h is None:
        raise Refused(404, f"没有隐患 {hazard_id}。")
    note = (note or "").strip()
    if to == "rectified":
        if h["state"] != "open":
            raise Refused(409, f"隐患已是「{HAZARD_STATE_LABEL.get(h['state'], h['state'])}」，不能再改为"
                               f"「{HAZARD_STATE_LABEL['rectified']}」。")
        prepared = prepare_photos(photos, photo_max_bytes)
        if not prepared:
            raise Refused(400, "整改完成需上传整改后的照片（至少 1 张）。")
        metas = write_photos(photos_dir(data_dir, "hazards", hazard_id), prepared, prefix=f"r{int(now)}-")
        sets = {"state": "rectified", "rectified_at": iso(now), "rectified_by": by, "rectify_note": note or None,
                "photos": [{**m, "stage": "rectified", "dir": f"hazards/{hazard_id}"} for m in metas]}
        got = store.hazard_advance(hazard_id, ("open",), sets)
    elif to == "closed":
        if h["state"] == "open" and not note:
            raise Refused(400, "未整改直接销号须写明理由。")
        got = store.hazard_advance(hazard_id, ("open", "rectified"), {
            "state": "closed", "closed_at": iso(now), "closed_by": by, "close_note": note or None})
    else:
        raise Refused(400, f"隐患状态只能改为 rectified 或 closed，不能改为 {to!r}。")
    if got is None:
        raise Refused(409, f"隐患已是「{HAZARD_STATE_LABEL.get(h['state'], h['state'])}」，不能再改为"
                           f"「{HAZARD_STATE_LABEL.get(to, to)}」。")
    return got


def hazard_overdue(h: Mapping[str, Any], now: float) -> bool:
    """Still open (not rectified) past its rectification deadline."""
    return h["state"] == "open" and epoch(h["deadline"]) < now


def day_text(t: float) -> str:
    return f"{beijing(t):%m-%d %H:%M}"
