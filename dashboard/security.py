"""Web security of the dashboard, registered with one call: `register_security(app, settings)`.

- sign-in (dashboard/login.py): server-side sessions, roles, throttling, CSRF, display links;
- who may use `/api`: nobody anonymously unless this is a loopback-only insecure dev run (no
  SC_API_TOKEN, SC_SECURE off, the port bound to loopback, no staff account); otherwise every request
  but `/api/health` needs a session or a bearer token (personal, or the service SC_API_TOKEN), a 401
  without, and a state change needs the operator role whichever way the identity came;
- headers on every response: a CSP as strict as Dash allows (scripts only from this site plus the
  SHA-256 of Dash's own inline scripts, `frame-ancestors 'none'`), X-Frame-Options, nosniff,
  Referrer-Policy, COOP/CORP, Permissions-Policy, `Cache-Control: no-store` on pages and JSON;
- only IP addresses, localhost and `SC_DASHBOARD_ALLOWED_HOSTS` as Host (no DNS rebinding);
- an Origin check on every state-changing request (a browser always sends Origin on a cross-site
  POST; clients that send none, such as curl or an SMS gateway with the bearer token, are not
  browsers and carry no ambient cookie), plus the session's CSRF token on Dash callbacks;
- every malformed body to /api or a Dash callback answered with a JSON 400 (JSON is parsed by orjson:
  depth-limited, no RecursionError), oversized ones a JSON 413, and errors there JSON, never HTML;
  an unexpected error's traceback is logged once per kind, then counted (`ErrorLog`), so a client
  repeating a bad request cannot fill the log;
- the audit log (dashboard/audit.py) of every state-changing action and every refusal, under the
  authenticated identity, and never with a field link's token (its path is written with the
  dispatch id instead: the token is the link's only credential).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import logging
import re
import threading
import time
from typing import Any

import orjson
from dash import Dash
from flask import Flask, Response, current_app, g, has_request_context, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError

from core.diskfull import DISK_FULL_TEXT, is_disk_full
from core.settings import Settings
from core.staff import open_accounts, secret_key
from dashboard.audit import AuditLog, audit_path
from dashboard.login import CALLBACK_PREFIXES, bearer, current_user, register_login, session_user
from dashboard.sessions import open_sessions

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
JSON_PREFIXES = ("/api/", "/_dash-update-component")
MAX_BODY = 4 * 1024 * 1024  # Dash callback bodies are KBs; /api bodies are one short JSON object
NO_STORE_TYPES = ("text/html", "application/json")
# Pages made on the server (not by Dash) whose inline scripts are allowed by their hash, computed from
# the page as sent: the report's plotly charts. Everything in them is escaped by the page's code.
HASHED_PAGES = frozenset(("/report",))
CSP_BASE = {
    "default-src": "'self'",
    "script-src": "'self'",  # + the hashes of Dash's inline scripts
    "style-src": "'self' 'unsafe-inline'",  # plotly and the map insert style elements
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "worker-src": "'self' blob:",  # the map library's worker
    "child-src": "'self' blob:",
    "media-src": "'self' data: blob:",  # audio cues
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The pages themselves may ask the phone's position (the patrol check-in, /patrol); no frame may.
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(self), payment=(), usb=()",
    "X-Permitted-Cross-Domain-Policies": "none",
}


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON, parsed by orjson: a document nested too deep is a ValueError (a 400), not a
    RecursionError (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


class Security:
    """What the security hooks share; `app.server.config["SC_SECURITY"]`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_path
        self.accounts = open_accounts(settings)
        self.sessions = open_sessions(settings)
        self.audit = AuditLog(audit_path(data))
        self.refusals = RefusalLimiter()
        self.errors = ErrorLog()
        # Set by whoever binds the HTTP port (dashboard/cli.py): bound beyond loopback.
        self.exposed = False
        self.sessions.purge_expired()

    def sign_in_required(self) -> bool:
        """False only in a loopback-only insecure dev run with no staff account."""
        s = self.settings
        return bool(s.api_token) or s.secure or self.exposed or self.accounts.any()


def is_loopback(host: str) -> bool:
    """A bind address that only this machine can reach."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ErrorLog:
    """Unexpected errors: the first of each kind (exception type, where it was raised, route) logged
    with its traceback, the later ones counted and summed up in one line at most once a minute."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str, str], list[float]] = {}  # kind -> [count, unreported, last summary]

    @staticmethod
    def kind(exc: BaseException, route: str) -> tuple[str, str, str]:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
        return type(exc).__name__, where, route

    def report(self, exc: BaseException, route: str, what: str) -> None:
        key = self.kind(exc, route)
        now = time.monotonic()
        with self._lock:
            if len(self._kinds) > 1000:  # bounded whatever the variety
                self._kinds.clear()
            seen = self._kinds.get(key)
            if seen is None:
                self._kinds[key] = [1, 0, now]
                first = True
            else:
                seen[0] += 1
                seen[1] += 1
                first = False
                if now - seen[2] < self.every_s:
                    return
                count, unreported = int(seen[0]), int(seen[1])
                seen[1], seen[2] = 0, now
        if first:
            log.error("unhandled error on %s (first of its kind; repeats are counted)", what, exc_info=exc)
        else:
            log.error("unhandled error %s at %s on %s: %d times so far (%d since the last line)",
                      key[0], key[1], route, count, unreported)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {" ".join(k): int(v[0]) for k, v in self._kinds.items()}


DISK_FULL_PAGE = ("<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\"><title>暂时无法保存</title>"
                  "<body style=\"font-family:sans-serif;margin:3em\"><h1>暂时无法保存</h1><p>" + DISK_FULL_TEXT +
                  "</p><p>The data disk is full: this action was not saved. Try again shortly; alerts are still "
                  "raised and sent.</p></body></html>")


def json_error(status: int, message: str) -> tuple[Response, int]:
    resp = Response(orjson.dumps({"error": message, "status": status}), status=status, mimetype="application/json")
    return resp, status


def _actor() -> dict[str, Any]:
    """Who and from where, for the audit log, from the current request: the authenticated identity
    (account, `api-token`, `display:<link>`), and how it authenticated (`auth`)."""
    if not has_request_context():
        return {"actor": "local", "via": None, "addr": None}
    user = current_user()
    path = request.path
    via = "api" if path.startswith("/api/") else "console" if path.startswith(CALLBACK_PREFIXES) else "web"
    if user is None:
        return {"actor": "anonymous", "via": via, "addr": request.remote_addr}
    out = {"actor": user.username, "role": user.role, "via": via, "addr": request.remote_addr, "auth": user.kind}
    if g.get("sc_token_id"):
        out["token_id"] = g.sc_token_id
    return out


def redacted_path(path: str) -> str:
    """The request path fit for a log: a field link's token replaced by its dispatch id (or `<link>`)."""
    if not path.startswith("/d/"):
        return path
    token, _, rest = path[3:].partition("/")
    name = current_app.config.get("SC_LINK_NAME")
    label = (name(token) if name else None) or "<link>"
    return f"/d/{label}" + (f"/{rest}" if rest else "")


def audit(action: str, **fields: Any) -> None:
    """Append to the audit log of the running app (a no-op outside a request of an app with it)."""
    if not has_request_context():
        return
    sec: Security | None = current_app.config.get("SC_SECURITY")
    if sec is None:
        return
    entry = {**_actor(), **fields}
    entry.setdefault("addr", request.remote_addr)
    g.sc_audited = True
    try:
        sec.audit.record(action, **entry)
    except OSError:
        log.exception("could not write the audit log")


def audit_action(action: str, target: str | None, outcome: str, status: int, **detail: Any) -> None:
    """For code that changes state (acknowledge, resolve, dispatch, shelve ...): one audit line."""
    audit(action, target=target, outcome=outcome, status=status, **detail)


class RefusalLimiter:
    """At most `per_minute` refusal lines per (address, reason) a minute; the rest are counted and
    the count written with the next line of that kind, so a flood cannot fill the disk."""

    def __init__(self, per_minute: int = 60) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, lines, suppressed]

    def admit(self, key: tuple[str, str], now: float) -> tuple[bool, int]:
        """(write this line?, lines suppressed before it to report with it)."""
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 60}
            w = self._seen.setdefault(key, [now, 0, 0])
            if now - w[0] >= 60:
                suppressed = int(w[2])
                w[:] = [now, 1, 0]
                return True, suppressed
            if w[1] < self.per_minute:
                w[1] += 1
                return True, 0
            w[2] += 1
            return False, 0


def audit_refusal(reason: str, status: int, **detail: Any) -> None:
    sec: Security | None = current_app.config.get("SC_SECURITY")
    if sec is None:
        return
    ok, suppressed = sec.refusals.admit((request.remote_addr or "?", reason), time.monotonic())
    if not ok:
        return
    if suppressed:
        detail["suppressed_before"] = suppressed
    audit("refused", target=f"{request.method} {redacted_path(request.path)}", outcome="refused", status=status,
          reason=reason, **detail)


def _same_origin(value: str) -> bool:
    """The Origin/Referer names this host and port. The scheme is not compared: behind a TLS reverse
    proxy the browser says https while the dashboard sees http."""
    from urllib.parse import urlsplit

    try:
        netloc = urlsplit(value).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and netloc == request.host.lower()


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """An IP address, localhost, or a configured name: a page from a DNS name that was re-pointed at
    this machine (DNS rebinding) carries its own name in Host and is refused."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name in ("localhost", "localhost.") or name.rstrip(".") in allowed


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """`SC_DASHBOARD_ALLOWED_HOSTS` plus the host name of the public URL staff are sent to (SC_PUBLIC_URL)."""
    from urllib.parse import urlsplit

    names = {h.strip() for h in (settings.dashboard_allowed_hosts or "").split(",")}
    if settings.public_url:
        with contextlib.suppress(ValueError):
            names.add(urlsplit(settings.public_url).hostname or "")
    return frozenset(n.lower().rstrip(".") for n in names if n)


def _origin_ok() -> bool:
    """Browsers say where a request comes from: Fetch Metadata (`Sec-Fetch-Site`, which a page cannot
    set) where sent, else Origin, else Referer. A page with `no-referrer` (the field page, whose URL
    is its credential) sends `Origin: null` on its own form posts; Sec-Fetch-Site still says same-origin,
    and where the browser sends no Sec-Fetch-Site the form's per-link token (`?ft=`) stands in."""
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site not in ("same-origin", "none"):
            return False
        return origin is None or origin == "null" or _same_origin(origin)
    if origin == "null" and request.path.startswith("/d/"):
        # The field page's own post from a browser without Fetch Metadata: it carries the link's form
        # token in its action URL, which another site's page cannot know.
        form_ok = current_app.config.get("SC_FIELD_FORM_OK")
        token = request.path[3:].split("/", 1)[0]
        return bool(form_ok and form_ok(token, request.args.get("ft", "")))
    if origin is not None:
        return origin != "null" and _same_origin(origin)
    referer = request.headers.get("Referer")
    if referer:
        return _same_origin(referer)
    return True  # not a browser: no ambient credentials to abuse


def _callback_body_problem(app: Dash, doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "a callback body is a JSON object"
    output = doc.get("output")
    if not isinstance(output, str) or output not in app.callback_map:
        return "unknown callback output"
    for key in ("inputs", "state", "changedPropIds"):
        if key in doc and not isinstance(doc[key], list):
            return f'"{key}" must be a list'
    if not isinstance(doc.get("inputs"), list):
        return '"inputs" is required'
    for item in doc.get("inputs", []) + doc.get("state", []):
        entries = item if isinstance(item, list) else [item]
        for e in entries:
            if not isinstance(e, dict) or "id" not in e or not isinstance(e.get("property"), str):
                return "each input and state is {id, property, value}"
    outs = doc.get("outputs")
    if outs is not None and not isinstance(outs, dict | list):
        return '"outputs" must be an object or a list'
    if output.startswith(".."):  # a callback of several outputs: one entry each, in order
        want = len(output.strip(".").split("..."))
        if not isinstance(outs, list) or len(outs) != want:
            return f'"outputs" must list the callback\'s {want} outputs'
    elif isinstance(outs, list) and not output.startswith("{"):  # one output (a list only for a pattern id)
        return '"outputs" of a one-output callback is an object'
    if outs is None:
        return None
    wanted = output.strip(".").split("...") if output.startswith("..") else [output]
    for want, got in zip(wanted, outs if output.startswith("..") else [outs], strict=True):
        for e in got if isinstance(got, list) else [got]:  # a list: the ids one pattern output matched
            if not isinstance(e, dict) or "id" not in e or not isinstance(e.get("property"), str):
                return "each output is {id, property}"
            if isinstance(e["id"], str) and f"{e['id']}.{e['property']}" != want:
                return "the outputs do not match the callback"
    return None


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", re.S | re.I)


class CSP:
    """The Content-Security-Policy header, with the hashes of Dash's inline scripts and of those in
    the app's `index_string` (recomputed if either changes, e.g. callbacks registered late)."""

    def __init__(self, app: Dash) -> None:
        self.app = app
        self._key: tuple[int, int] | None = None
        self._value = ""

    def value(self) -> str:
        from dash import _callback

        key = (len(self.app._inline_scripts), len(_callback.GLOBAL_INLINE_SCRIPTS), hash(self.app.index_string))
        if key != self._key:
            hashes = set(self.app.csp_hashes()) | {_sha256(b) for b in INLINE_SCRIPT.findall(self.app.index_string)}
            policy = dict(CSP_BASE, **{"script-src": f"{CSP_BASE['script-src']} {' '.join(sorted(hashes))}".strip()})
            self._value = "; ".join(f"{k} {v}" for k, v in policy.items())
            self._key = (len(self.app._inline_scripts), len(_callback.GLOBAL_INLINE_SCRIPTS),
                         hash(self.app.index_string))
        return self._value

    def with_page(self, body: str) -> str:
        """The policy plus the hashes of the inline scripts of one server-made page."""
        extra = " ".join(sorted({_sha256(b) for b in INLINE_SCRIPT.findall(body)}))
        return self.value().replace("script-src 'self'", f"script-src 'self' {extra}", 1) if extra else self.value()


def _sha256(body: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


def register_security(app: Dash, settings: Settings) -> Security:
    """Install every hook on the app's Flask server; call once, before the callbacks run."""
    server: Flask = app.server
    sec = Security(settings)
    server.config["SC_SECURITY"] = sec
    server.secret_key = secret_key(settings.data_path)
    server.json = OrjsonProvider(server)
    csp = CSP(app)
    hosts = allowed_hosts(settings)

    @server.before_request
    def _protect() -> tuple[Response, int] | Response | None:
        path = request.path
        if not host_allowed(request.host, hosts):
            msg = f"unknown host name {request.host!r}: add it to SC_DASHBOARD_ALLOWED_HOSTS"
            if path.startswith(JSON_PREFIXES):
                return json_error(400, msg)
            return Response(msg, status=400, mimetype="text/plain")
        if request.method in SAFE_METHODS:
            return None
        if not _origin_ok():
            audit_refusal("cross-origin", 403, origin=request.headers.get("Origin"),
                          referer=request.headers.get("Referer"))
            if path.startswith(JSON_PREFIXES):
                return json_error(403, "cross-origin request refused")
            return Response("cross-origin request refused", status=403, mimetype="text/plain")
        return None

    register_login(server, sec)  # its gate runs after the Origin check, before the body checks

    @server.before_request
    def _bodies() -> tuple[Response, int] | None:
        path = request.path
        if path.startswith("/api/") and path != "/api/health":
            user = current_user()  # the bearer token's identity when one is sent, else the session's
            # With SC_API_TOKEN set the contract wants the bearer header on every /api request (a
            # personal token is one too); without it a session will do.
            need_bearer = bool(sec.settings.api_token) and not bearer()
            if (user is None and sec.sign_in_required()) or (bearer() and user is None) or need_bearer:
                if request.method not in SAFE_METHODS or bearer():
                    audit_refusal("bearer token" if bearer() else "no credentials", 401)
                resp, status = json_error(401, "send Authorization: Bearer <token> (a personal token: "
                                               "smartcommunity users token NAME)" if need_bearer else
                                          "sign in, or send Authorization: Bearer <token> "
                                          "(a personal token: smartcommunity users token NAME)")
                resp.headers["WWW-Authenticate"] = 'Bearer realm="smartcommunity"'
                return resp, status
            if request.method not in SAFE_METHODS:
                # Below operator (a viewer, a display link, a viewer's token) never acts through /api,
                # whichever way it authenticated, nor a viewer's browser by adding someone's token.
                for who in (user, session_user()):
                    if who is not None and not who.can("operator"):
                        audit_refusal("role", 403, need="operator", have=who.role)
                        return json_error(403, "this needs the operator role")
        if request.method in SAFE_METHODS:
            return None
        if path.startswith(JSON_PREFIXES):
            if (request.content_length or 0) > MAX_BODY:
                return json_error(413, f"body larger than {MAX_BODY} bytes")
            raw = request.get_data(cache=True)
            if raw.strip():
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    return json_error(400, f"body is not valid JSON: {str(exc)[:200]}")
                if path.startswith("/_dash-update-component"):
                    problem = _callback_body_problem(app, doc)
                    if problem:
                        return json_error(400, problem)
            elif path.startswith("/_dash-update-component"):
                return json_error(400, "a callback needs a JSON body")
        return None

    @server.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if request.path.startswith(JSON_PREFIXES) or request.path.startswith(CALLBACK_PREFIXES):
            return json_error(exc.code or 500, exc.description or exc.name)
        return exc

    @server.errorhandler(Exception)
    def _any_error(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        if is_disk_full(exc):  # a full data disk is a known, passing condition: 503, said plainly
            log.error("%s %s not saved: data disk full (%s)", request.method, redacted_path(request.path), exc)
            if request.path.startswith(JSON_PREFIXES) or request.path.startswith(CALLBACK_PREFIXES):
                resp, status = json_error(503, DISK_FULL_TEXT)
            else:
                resp, status = Response(DISK_FULL_PAGE, status=503, mimetype="text/html"), 503
            resp.headers["Retry-After"] = "30"
            return resp, status
        sec.errors.report(exc, str(request.url_rule or redacted_path(request.path)),
                          f"{request.method} {redacted_path(request.path)}")
        if request.path.startswith(JSON_PREFIXES) or request.path.startswith(CALLBACK_PREFIXES):
            return json_error(500, "internal error (logged)")
        return InternalServerError()

    @server.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = csp.value()
        if request.path in HASHED_PAGES and resp.mimetype == "text/html" and not resp.direct_passthrough:
            resp.headers["Content-Security-Policy"] = csp.with_page(resp.get_data(as_text=True))
        for k, v in HEADERS.items():
            resp.headers.setdefault(k, v)
        if resp.mimetype in NO_STORE_TYPES and "Cache-Control" not in resp.headers:
            resp.headers["Cache-Control"] = "no-store"
        if (request.method not in SAFE_METHODS and not g.get("sc_audited") and request.url_rule is not None
                and not request.path.startswith(CALLBACK_PREFIXES) and resp.status_code < 400):
            # A state change by a route that writes no audit line of its own (dispatch, archive, the
            # field page ...): the route's pattern and its arguments, never a link token.
            args = {k: v for k, v in (request.view_args or {}).items() if k != "token"}
            if request.path.startswith("/d/"):  # the field page: its dispatch, named by id
                args = {"dispatch_id": redacted_path(request.path).split("/")[2], **args}
            audit(f"{request.method} {request.url_rule.rule}", target=next(iter(args.values()), None),
                  outcome="ok", status=resp.status_code, **args)
        sess = g.get("sc_session")
        if sess is not None and request.cookies.get("_csrf_token") != sess.csrf and not _ending(resp):
            resp.set_cookie("_csrf_token", sess.csrf, httponly=False, samesite="Strict", secure=request.is_secure,
                            path="/")
        return resp

    return sec


def _ending(resp: Response) -> bool:
    return any("_csrf_token=;" in c for c in resp.headers.getlist("Set-Cookie"))
