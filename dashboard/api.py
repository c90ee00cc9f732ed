"""The JSON /api of contract §4, as Flask routes on the Dash app's server.

Who may call it is settled before any route runs (dashboard/security.py): outside a loopback-only dev
run every request but /api/health needs a session or a bearer token (the contract's SC_API_TOKEN, or a
personal token), and acknowledge / resolve are recorded under that identity; the body's "by" is kept
only as a remark in the note (`acting_as`). A person with a scope (dashboard/scope.py) reads and acts
on what is in it only; anything else answers 404, as if it did not exist.
Errors are JSON: {"error": "..."} with 400/401/403/404/409.
A resolve refused because the danger is still measured answers 409 with the live reading
{"error", "value", "at", ...} (alerts/guard.py); the body's `"override": true` with a non-empty
`"note"` closes it all the same, recorded as an override.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from alerts import inhibit
from alerts.rules import title_of
from alerts.store import Store
from core.contract import COMMUNITIES, AlertState
from core.settings import Settings
from dashboard.actions import AlertActions
from dashboard.health import HealthChecker
from dashboard.login import acting_as, current_user
from dashboard.metrics import CONTENT_TYPE, render_metrics
from dashboard.scope import hidden, scoped_store

STATES = frozenset(str(s) for s in AlertState)
MAX_TEXT = 2000
MAX_LIMIT = 5000


def error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def _body(required_by: bool) -> tuple[dict[str, str | None], str | None]:
    """({"by", "note"}, None) or ({}, error message)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required_by:
            return {}, 'body must be a JSON object {"by": "...", "note": "..."}'
        return {"by": None, "note": None}, None
    doc: Any = request.get_json(force=True, silent=True)
    if not isinstance(doc, dict):
        return {}, "body is not a JSON object"
    out: dict[str, str | None] = {}
    for key in ("by", "note"):
        v = doc.get(key)
        if v is not None and not isinstance(v, str):
            return {}, f'"{key}" must be a string'
        if v is not None and len(v) > MAX_TEXT:
            return {}, f'"{key}" is longer than {MAX_TEXT} characters'
        out[key] = v.strip() if isinstance(v, str) else None
    if required_by and not out["by"] and current_user() is None:  # signed in: the identity signs
        return {}, '"by" (who acknowledges) is required'
    return out, None


def with_cause(rows: list[dict[str, Any]], causes: dict[str, Any]) -> list[dict[str, Any]]:
    """Each muted alert with, alongside the contract's fields, the open alert muting it (alerts/inhibit.py)."""
    for row in rows:
        c = causes.get(row["alert_id"])
        if c is not None:
            row["inhibited_by"] = {"alert_id": c.alert_id, "rule": c.rule, "title": title_of(c.rule),
                                   "words": inhibit.WORDS.format(title=title_of(c.rule)),
                                   "href": f"/alerts/{c.alert_id}", "api": f"/api/alerts/{c.alert_id}"}
    return rows


def _causes(settings: Settings, store: Store, alerts: list[Any]) -> dict[str, Any]:
    if not any(inhibit.marked(a.message) for a in alerts):
        return {}  # nothing muted here: no second read
    return inhibit.causes(alerts, store.open_alerts().values(), settings.alerts_rules_file)


def make_api(settings: Settings, store: Store, actions: AlertActions, checker: HealthChecker) -> Blueprint:
    api = Blueprint("sc_api", __name__, url_prefix="/api")

    @api.get("/health")
    def health() -> tuple[Response, int]:
        ok, body = checker.report()
        resp = jsonify(body)
        resp.headers["Cache-Control"] = "no-store"
        return resp, 200 if ok else 503

    @api.get("/alerts")
    def list_alerts() -> tuple[Response, int]:
        states: list[str] = []
        for raw in request.args.getlist("state"):  # ?state=a&state=b and ?state=a,b both work
            states += [s.strip() for s in raw.split(",") if s.strip()]
        bad = sorted(set(states) - STATES)
        if bad:
            return error(400, f"unknown state {', '.join(bad)}; use {', '.join(sorted(STATES))}")
        community = request.args.get("community") or None
        if community is not None and community not in COMMUNITIES:
            return error(400, f"unknown community {community!r}; use {', '.join(COMMUNITIES)}")
        try:
            limit = int(request.args.get("limit", "500"))
        except ValueError:
            return error(400, "limit must be an integer")
        if not 1 <= limit <= MAX_LIMIT:
            return error(400, f"limit must be 1..{MAX_LIMIT}")
        alerts = scoped_store(store).list(state=",".join(dict.fromkeys(states)) or None, community=community,
                                          limit=limit)
        return jsonify(with_cause([a.as_json() for a in alerts], _causes(settings, store, alerts))), 200

    @api.get("/alerts/<alert_id>")
    def get_alert(alert_id: str) -> tuple[Response, int]:
        view = scoped_store(store)  # out of the caller's scope: as if there were no such alert
        alert = view.get(alert_id)
        if alert is None:
            return error(404, f"no alert {alert_id}")
        # The contract's alert, plus (alongside it) every step of its timeline, oldest first.
        (row,) = with_cause([alert.as_json()], _causes(settings, store, [alert]))
        return jsonify({**row, "timeline": [st.as_json() for st in view.timeline(alert_id)]}), 200

    @api.post("/alerts/<alert_id>/ack")
    def ack(alert_id: str) -> tuple[Response, int]:
        if hidden(store, alert_id):
            return error(404, f"no alert {alert_id}")
        body, problem = _body(required_by=True)
        if problem:
            return error(400, problem)
        who, note = acting_as(body["by"], body["note"])
        out = actions.acknowledge(alert_id, who or "", note)
        if out.alert is None or out.status != 200:
            return error(out.status, out.error or "refused")
        return jsonify(out.alert.as_json()), 200

    @api.post("/alerts/<alert_id>/resolve")
    def resolve(alert_id: str) -> tuple[Response, int]:
        if hidden(store, alert_id):
            return error(404, f"no alert {alert_id}")
        body, problem = _body(required_by=False)
        if problem:
            return error(400, problem)
        override = request.get_json(force=True, silent=True) if request.get_data(cache=True).strip() else None
        override = isinstance(override, dict) and override.get("override") is True
        who, note = acting_as(body["by"], body["note"])
        out = actions.resolve(alert_id, who, note, override=override)
        if out.alert is None or out.status != 200:
            return jsonify(out.body()), out.status
        return jsonify(out.alert.as_json()), 200

    # Without this, Dash's catch-all page route would answer unknown /api paths with HTML.
    @api.route("/", defaults={"_rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @api.route("/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(_rest: str) -> tuple[Response, int]:
        return error(404, f"no such API endpoint: {request.method} {request.path}")

    return api


def register_api(
    server: Flask, settings: Settings, store: Store, actions: AlertActions, health: HealthChecker
) -> None:
    server.register_blueprint(make_api(settings, store, actions, health))

    @server.get("/metrics")
    def metrics() -> Response:
        return Response(render_metrics(settings.data_path, health.sizes.latest()), content_type=CONTENT_TYPE)
