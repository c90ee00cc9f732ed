"""What a scoped person sees: the one place where the dashboard's data is narrowed to an account's
`Scope` (core/staff.py: some communities and/or device kinds) on its way to that person.

The Dashboard hands its pages and callbacks the store, the live state, the map data and the shelf
marks through `scoped_*` here, so every page, callback and map layer reads only what is in scope; the
/api and the report routes do the same with `scoped_store`; every staff action passes `refusal`
(dashboard/actions.py); and a page URL of an alert, device or compound out of scope answers 404
(`register_scope_guard`), like one that does not exist, so a scope does not reveal what lies outside it.
A person without a scope (and the display link, the service token, the loopback dev run) sees the
whole street, through the very same objects.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from flask import Flask, Response, has_request_context, request

from alerts.report import ALL, Report
from alerts.store import ReportRows, Row, Store
from core.contract import COMMUNITIES, KIND_LABEL, KINDS, Alert, Device
from core.staff import Scope
from dashboard.geo import BaseLayers
from dashboard.theme import SCOPE_WORDS as W

# The pages about one thing (dashboard/pages/alert.py, device.py, compound.py), by their URL.
THING_PAGE = re.compile(r"^/(alerts|devices|compounds)/([^/]+)/?$")
NOT_FOUND_PAGE = (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{W["not_found"]}</title>'
                  f'<body style="font-family:sans-serif;margin:3em"><h1>{W["not_found"]}</h1>'
                  f'<p>{W["not_found_text"]}<a href="/">{W["back"]}</a></p></body></html>')
_CACHE_MAX = 32
LIST_WIDEN = 4  # a list the store cannot narrow to the scope is read this much longer, then cut


def current_scope() -> Scope | None:
    """The scope of this request's person; None when they see everything (or outside a request)."""
    if not has_request_context():
        return None
    from dashboard.login import current_user

    user = current_user()
    scope: Scope | None = getattr(user, "scope", None)
    return None if scope is None or scope.everything else scope


def communities_seen() -> dict[str, str]:
    """slug -> name of the communities this request's person sees (the street's four without a scope)."""
    scope = current_scope()
    return {c: n for c, n in COMMUNITIES.items() if community_in(scope, c)}


def scope_words(scope: Scope) -> str:
    """The scope as staff say it, e.g. 岩岭社区 · 燃气 ("" for the whole street)."""
    names = [COMMUNITIES.get(c, c) for c in COMMUNITIES if c in scope.communities]
    kinds = [KIND_LABEL.get(k, k) for k in KINDS if k in scope.kinds]
    return " · ".join(x for x in ("、".join(names), "、".join(kinds)) if x)


# -- the single judgements ------------------------------------------------------------------------------
def alert_in(scope: Scope | None, a: Alert | None) -> bool:
    return a is not None and (scope is None or scope.allows(a.community, a.kind))


def device_in(scope: Scope | None, dev: Device | None) -> bool:
    return dev is not None and (scope is None or scope.allows(dev.community, dev.kind))


def community_in(scope: Scope | None, community: str | None) -> bool:
    return scope is None or scope.community(community)


# -- the map's static layers and the registry ----------------------------------------------------------
class ScopedRegistry(Mapping[str, Device]):
    """The devices of a registry in a scope; its `version` names the scope too (figure caches)."""

    def __init__(self, reg: Mapping[str, Device], scope: Scope) -> None:
        self.devices = {k: d for k, d in reg.items() if device_in(scope, d)}
        self.version = f"{getattr(reg, 'version', 'none')}|{scope.key}"

    def __getitem__(self, device_id: str) -> Device:
        return self.devices[device_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)


_lock = threading.Lock()
_layers: dict[tuple[str, str], BaseLayers] = {}
_registries: dict[tuple[int, str, str], ScopedRegistry] = {}


def _fc(doc: dict[str, Any], keep: Any) -> dict[str, Any]:
    return {**doc, "features": [f for f in doc.get("features", []) if keep(f.get("properties") or {})]}


def scoped_layers(base: BaseLayers, scope: Scope | None) -> BaseLayers:
    """The static layers in a scope: the communities, compounds (with their buildings), units, shops
    and emergency resources of its communities; a scope of kinds only keeps the whole street's places."""
    if scope is None:
        return base
    key = (base.key, scope.key)
    with _lock:
        got = _layers.get(key)
    if got is not None:
        return got
    if not scope.communities:
        got = replace(base, key=f"{base.key}|{scope.key}")
    else:
        keep = [i for i, cid in enumerate(base.compound_ids)
                if community_in(scope, base.places[cid].community if cid in base.places else None)]
        inside = {base.compound_ids[i] for i in keep}
        outside_names = {p.name for cid, p in base.places.items()
                         if cid in base.compound_ids and cid not in inside}

        def building(props: dict[str, Any]) -> bool:  # building ids are <compound id>-B<n>
            bid = str(props.get("building_id") or "")
            return bid.rsplit("-", 1)[0] in inside

        def resource(r: dict[str, Any]) -> bool:  # a resource of no community serves the whole street
            if r.get("community") and not scope.community(r["community"]):
                return False
            return not any(n and n in r.get("detail", "") + r.get("name", "") for n in outside_names)

        got = replace(
            base,
            communities=_fc(base.communities, lambda p: scope.community(p.get("community"))),
            compounds=_fc(base.compounds, lambda p: p.get("compound_id") in inside),
            buildings=_fc(base.buildings, building),
            community_centres={c: v for c, v in base.community_centres.items() if scope.community(c)},
            compound_ids=[base.compound_ids[i] for i in keep],
            compound_info=[base.compound_info[i] for i in keep],
            units=[u for u in base.units if scope.community(u.get("community"))],
            shops=[s for s in base.shops if scope.community(s.get("community"))],
            places={k: p for k, p in base.places.items() if scope.community(p.community)},
            resources=[r for r in base.resources if resource(r)],
            key=f"{base.key}|{scope.key}",
        )
    with _lock:
        if len(_layers) >= _CACHE_MAX:
            _layers.clear()
        _layers[key] = got
    return got


def scoped_registry(reg: Mapping[str, Device], scope: Scope | None) -> Mapping[str, Device]:
    if scope is None:
        return reg
    key = (id(reg), str(getattr(reg, "version", "none")), scope.key)
    with _lock:
        got = _registries.get(key)
        if got is not None and got.version.startswith(key[1]):
            return got
    got = ScopedRegistry(reg, scope)
    with _lock:
        if len(_registries) >= _CACHE_MAX:
            _registries.clear()
        _registries[key] = got
    return got


# -- the alert store, read through a scope ---------------------------------------------------------------
class ScopedStore:
    """The reads of a Store that leave for a person, narrowed to their scope. Only reads: a page
    never writes (actions are commands, dashboard/actions.py), and a read not listed here is an
    AttributeError, never an unfiltered answer."""

    def __init__(self, store: Store, scope: Scope) -> None:
        self._store = store
        self.scope = scope

    def _ok(self, a: Alert | None) -> bool:
        return alert_in(self.scope, a)

    def _alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        return [a for a in alerts if self._ok(a)]

    def get(self, alert_id: str) -> Alert | None:
        a = self._store.get(alert_id)
        return a if self._ok(a) else None

    def list(self, state: str | None = None, community: str | None = None, limit: int = 500,
             **filters: Any) -> list[Alert]:
        if community is not None and not self.scope.community(community):
            return []
        if community is None and len(self.scope.communities) == 1:  # the store filters: a full page
            community = next(iter(self.scope.communities))
        narrow = self.scope.kinds or (community is None and self.scope.communities)
        got = self._store.list(state, community, limit * LIST_WIDEN if narrow else limit, **filters)
        return self._alerts(got)[:limit]

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        return {k: a for k, a in self._store.open_alerts().items() if self._ok(a)}

    def timeline(self, alert_id: str) -> list[Any]:
        return self._store.timeline(alert_id) if self.get(alert_id) is not None else []

    def archived(self, alert_id: str) -> Row | None:
        return self._store.archived(alert_id) if self.get(alert_id) is not None else None

    def _dispatch_ok(self, r: Row | None) -> bool:
        return r is not None and self.get(str(r.get("alert_id"))) is not None

    def dispatch(self, dispatch_id: str) -> Row | None:
        r = self._store.dispatch(dispatch_id)
        return r if self._dispatch_ok(r) else None

    def dispatches_for(self, alert_id: str) -> list[Row]:
        return self._store.dispatches_for(alert_id) if self.get(alert_id) is not None else []

    def open_dispatches(self, states: Sequence[str], community: str | None = None) -> list[Row]:
        if community is not None and not self.scope.community(community):
            return []
        return [r for r in self._store.open_dispatches(states, community) if self._dispatch_ok(r)]

    def pending_archive(self, severities: Sequence[str], community: str | None = None,
                        limit: int = 1000) -> list[Alert]:
        if community is not None and not self.scope.community(community):
            return []
        return self._alerts(self._store.pending_archive(severities, community, limit))

    def shelves(self, live_at: float | None = None) -> list[Row]:
        return [s for s in self._store.shelves(live_at=live_at) if self.shelf_ok(s["scope"], s["target"])]

    def shelf_ok(self, kind_of_shelf: str, target: str, devices: Mapping[str, Device] | None = None) -> bool:
        return shelf_in(self.scope, kind_of_shelf, target, devices)

    def report_rows(self, lo: str, hi: str, community: str | None, open_states: Sequence[str]) -> ReportRows:
        if community is not None and not self.scope.community(community):
            return ReportRows([], {}, [], {})
        rows = self._store.report_rows(lo, hi, community, open_states)
        alerts = self._alerts(rows.alerts)
        ids = {a.alert_id for a in alerts}
        return ReportRows(alerts, {k: v for k, v in rows.firsts.items() if k[0] in ids},
                          [(r, c) for r, c in rows.open_dispatches if self._dispatch_ok(r)],
                          {k: v for k, v in rows.overrides.items() if k in ids})

    # Patrols and hazards: a place's community decides (a gas company's kind scope names no patrol).
    def checkins(self, since: str, until: str | None = None, plan_id: str | None = None) -> list[Row]:
        return [r for r in self._store.checkins(since, until, plan_id) if self.scope.community(r["community"])]

    def hazards(self, states: Sequence[str] | None = None, community: str | None = None,
                found_before: str | None = None, limit: int = 1000) -> list[Row]:
        return [r for r in self._store.hazards(states, community, found_before, limit)
                if self.scope.community(r["community"])]

    # Reads that name no alert, device or place.
    def last_seq(self) -> int:
        return self._store.last_seq()

    def close(self) -> None:  # the Dashboard's store is closed by the Dashboard, not by a person's view
        return None


def _registry() -> Mapping[str, Device]:
    from dashboard.mapview import dctx

    return dctx().mapdata.registry()  # type: ignore[no-any-return]


def shelf_in(scope: Scope | None, kind_of_shelf: str, target: str,
             devices: Mapping[str, Device] | None = None) -> bool:
    """A shelf (seen, set or ended) in a scope: a device in it; a compound of its communities, for a
    scope of every kind; a kind of its kinds, for a scope of every community; a rule only with no scope."""
    if scope is None:
        return True
    if kind_of_shelf == "device":
        reg = devices if devices is not None else _registry()
        return device_in(scope, reg.get(target))
    if kind_of_shelf == "compound":
        if scope.kinds:
            return False
        from dashboard.mapview import dctx

        place = dctx().mapdata.layers().places.get(target)
        return place is not None and scope.community(place.community)
    if kind_of_shelf == "kind":
        return not scope.communities and scope.kind(target)
    return False


# -- the live picture and the map data, through a scope -------------------------------------------------
class ScopedMapData:
    def __init__(self, mapdata: Any, scope: Scope) -> None:
        self._m = mapdata
        self.scope = scope
        self.settings = mapdata.settings

    def layers(self) -> BaseLayers:
        return scoped_layers(self._m.layers(), self.scope)

    def registry(self) -> Mapping[str, Device]:
        return scoped_registry(self._m.registry(), self.scope)

    def registry_version(self) -> str:
        return str(getattr(self.registry(), "version", "none"))


class ScopedState:
    """The live state (dashboard/state.py) as a scoped person sees it: same versions, fewer things."""

    def __init__(self, state: Any, scope: Scope) -> None:
        self._s = state
        self.scope = scope

    @property
    def version(self) -> int:
        return int(self._s.version)

    def view(self) -> tuple[BaseLayers, Mapping[str, Device], Any]:
        return self._s.view(self.scope)  # type: ignore[no-any-return]

    def past_view(self, version: int, reg_version: str, base_key: str) -> Any:
        return self._s.past_view(version, reg_version, base_key)

    def alerts(self) -> list[Alert]:
        return [a for a in self._s.alerts() if alert_in(self.scope, a)]

    def get(self, alert_id: str) -> Alert | None:
        a = self._s.get(alert_id)
        return a if alert_in(self.scope, a) else None

    def offline(self) -> frozenset[str]:
        reg = scoped_registry(self._s.mapdata.registry(), self.scope)
        return frozenset(d for d in self._s.offline() if d in reg)


class ScopedShelfMarks:
    def __init__(self, marks: Any, scope: Scope) -> None:
        self._m = marks
        self.scope = scope

    def live(self) -> list[dict[str, Any]]:
        return [s for s in self._m.live() if shelf_in(self.scope, s["scope"], s["target"])]


def scoped_store(store: Store) -> Any:
    """The store as this request's person may read it."""
    scope = current_scope()
    return store if scope is None else ScopedStore(store, scope)


# -- actions ------------------------------------------------------------------------------------------
def refusal(store: Store, command: str, args: Mapping[str, Any]) -> tuple[int, str] | None:
    """Why this request's person may not send `command` about what `args` name (404: it is not in
    their scope, said as if it did not exist), or None."""
    scope = current_scope()
    if scope is None:
        return None
    view = ScopedStore(store, scope)
    if args.get("alert_id") is not None and view.get(str(args["alert_id"])) is None:
        return 404, f"no alert {args['alert_id']}"
    if args.get("dispatch_id") is not None and view.dispatch(str(args["dispatch_id"])) is None:
        return 404, f"no dispatch {args['dispatch_id']}"
    if command == "shelve" and not shelf_in(scope, str(args.get("scope")), str(args.get("target"))):
        return 404, f"no {args.get('scope')} {args.get('target')} in this account's scope"
    if args.get("shelf_id") is not None and not any(
            str(s.get("shelf_id")) == str(args["shelf_id"]) for s in view.shelves()):
        return 404, f"no shelf {args['shelf_id']}"
    return None


def hidden(store: Store, alert_id: str) -> bool:
    """An alert this request's person may not see (out of scope, or none): routes that check a body
    first ask this before, so an alert out of scope is a 404 whatever the body says."""
    scope = current_scope()
    return scope is not None and ScopedStore(store, scope).get(alert_id) is None


# -- page URLs -----------------------------------------------------------------------------------------
def thing_visible(kind: str, ident: str) -> bool:
    """Whether this request's person may see the alert, device or compound of a page URL."""
    from dashboard.mapview import dctx

    d = dctx()
    if kind == "alerts":
        return d.state.get(ident) is not None or d.store.get(ident) is not None
    if kind == "devices":
        return ident in d.mapdata.registry()
    return ident in d.mapdata.layers().places and ident in d.mapdata.layers().compound_ids


def register_scope_guard(server: Flask) -> None:
    """A scoped person's GET of an alert, device or compound page outside their scope (or of none at
    all: the two must look the same) is a 404."""

    @server.before_request
    def _scope_guard() -> tuple[Response, int] | None:
        if request.method not in ("GET", "HEAD"):
            return None
        m = THING_PAGE.match(request.path)
        if m is None or current_scope() is None or m.group(2) == "none":
            return None
        if thing_visible(m.group(1), m.group(2)):
            return None
        from dashboard.security import audit_refusal

        audit_refusal("scope", 404)
        return Response(NOT_FOUND_PAGE, status=404, mimetype="text/html"), 404


# -- dispatch teams ------------------------------------------------------------------------------------
def teams_in(teams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dispatch teams (as /api/dispatch/teams lists them) serving a community this request's
    person sees: a team of the whole street (no communities) serves everyone's."""
    scope = current_scope()
    if scope is None or not scope.communities:
        return teams
    return [t for t in teams if not t.get("communities") or set(t["communities"]) & scope.communities]


# -- the period report --------------------------------------------------------------------------------
def scoped_report(rep: Report, scope: Scope | None) -> Report:
    """A report built from a scoped store, without the (empty) sections of communities out of scope."""
    if scope is None:
        return rep
    sections = {c: s for c, s in rep.sections.items() if c == ALL or scope.community(c)}
    words = scope_words(scope)
    if words and ALL in sections:  # the sum is of this person's part of the street, and says so
        sections[ALL] = replace(sections[ALL], label=f"{words} 合计")
    return replace(rep, sections=sections)


# -- notifications (the demo's inbox) -------------------------------------------------------------------
INBOX_WINDOW = 2000  # a scoped person's inbox is drawn from this many newest messages


def inbox_in(inbox: Any, store: Any, scope: Scope, limit: int, channel: str | None,
             recipient: str | None) -> tuple[list[Any], list[tuple[str, str, str, int]]]:
    """(the newest `limit` messages about alerts in scope, of the chosen recipient; the recipients of
    such messages with their counts): a message about nothing in scope, or about no alert, is not shown."""
    view = ScopedStore(store, scope)
    seen: dict[str, bool] = {}

    def ok(m: Any) -> bool:
        if not m.alert_id:
            return False
        if m.alert_id not in seen:
            seen[m.alert_id] = view.get(m.alert_id) is not None
        return seen[m.alert_id]

    mine = [m for m in inbox.recent(INBOX_WINDOW) if ok(m)]
    counts: dict[tuple[str, str], list[Any]] = {}
    for m in mine:  # newest first: the most recently told recipient first
        counts.setdefault((m.channel, m.recipient), [m.name, 0])[1] += 1
    recipients = [(c, r, str(v[0] or ""), int(v[1])) for (c, r), v in counts.items()]
    got = [m for m in mine if (not channel or m.channel == channel) and (not recipient or m.recipient == recipient)]
    return got[:limit], recipients
