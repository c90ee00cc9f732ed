"""Sign-in for the dashboard pages: server-side sessions, roles, throttling, display links.

Required unless this is a loopback-only insecure dev run, i.e. whenever `SC_API_TOKEN` is set, security
is on (`SC_SECURE`), the HTTP port is bound beyond loopback, or any staff account exists: the pages and
their callbacks then need a signed-in account (or a display link's viewer identity), and every `/api`
request but `/api/health` needs a session or (always, when SC_API_TOKEN is set) a bearer token
(dashboard/security.py) — a personal token
(`smartcommunity users token NAME`, acting as that account with its role) or the contract's service token
`SC_API_TOKEN` (identity `api-token`, operator). `/metrics` and the static files stay open.

For other code: `current_user()` (a `User` with `.username`, `.name`, `.role`; `str()` of it is the
display name), `has_role(role)`, `check_role(role)` (the same, auditing a refusal: for callbacks that
show the refusal on the page) and `require_role(role)` (a 403 when the signed-in account is below
`role`). With no sign-in required (the loopback-only dev run) everyone may act and `current_user()` is
None. `acting_as(by, note)` is who an action is recorded under: the identity, never the body's `by`.
"""

from __future__ import annotations

import hmac
import html
import math
import secrets
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from flask import Flask, Response, current_app, g, redirect, request
from werkzeug.exceptions import Forbidden

from core.staff import EVERYTHING, Accounts, Scope, role_rank
from dashboard.sessions import DISPLAY_KIND, Session, SessionStore

if TYPE_CHECKING:
    from dashboard.security import Security

COOKIE = "sc_session"
CSRF_COOKIE = "_csrf_token"  # read by dash-renderer, sent back as the X-CSRFToken header
CSRF_HEADER = "X-CSRFToken"
LOGIN_CSRF_COOKIE = "sc_login_csrf"
_SIGNIN_LOCKS = [threading.Lock() for _ in range(64)]  # one account's attempts are judged one at a time
DISPLAY_COOKIE_MAX_AGE = 400 * 86400  # the wall PC keeps its identity across reboots until revoked

OPEN_PREFIXES = ("/login", "/logout", "/display/", "/api/", "/metrics", "/assets/", "/_dash-component-suites/",
                 "/_favicon.ico", "/map/", "/d/")  # /d/: the field page, its signed link is its credential
CALLBACK_PREFIXES = ("/_dash-update-component", "/_dash-layout", "/_dash-dependencies")
NO_NEXT = ("/login", "/logout", "/display/")

STYLE = """<style>body{background:#070d18;color:#e6edf7;font-family:"Noto Sans CJK SC",sans-serif;display:flex;
align-items:center;justify-content:center;height:100vh;margin:0}form,.box{background:#0e1726;padding:32px 40px;
border-radius:10px;border:1px solid #22395a;width:320px}h1{font-size:22px;margin:0 0 20px}
label{display:block;margin:12px 0 4px;color:#8da2bf}input{width:100%;padding:8px;font-size:16px;
box-sizing:border-box;background:#070d18;color:#e6edf7;border:1px solid #22395a;border-radius:4px}
button{margin-top:20px;width:100%;padding:10px;font-size:17px;background:#2b6fd6;color:#fff;border:0;
border-radius:4px}.err{color:#ff6b6b;margin-top:12px}.hint{color:#8da2bf;font-size:13px;margin-top:14px}</style>"""
HEAD = ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        "<title>{title} · 车城路街道 综合一张图</title>{style}")
PAGE = HEAD + """
</head><body><form method="post" action="/login"><h1>车城路街道 综合一张图</h1>
<input type="hidden" name="next" value="{next}"><input type="hidden" name="csrf" value="{csrf}">
<label for="u">账号</label>
<input id="u" name="username" autocomplete="username" autofocus><label for="p">密码</label>
<input id="p" name="password" type="password" autocomplete="current-password">
<button type="submit">登录</button>{error}{hint}</form></body></html>"""
LOGOUT_PAGE = HEAD + """
</head><body><form method="post" action="/logout"><h1>退出登录</h1><div class="hint">{who}</div>
<input type="hidden" name="csrf" value="{csrf}"><button type="submit">退出</button></form></body></html>"""
MESSAGE_PAGE = HEAD + """
</head><body><div class="box"><h1>{title}</h1><div class="err">{message}</div></div></body></html>"""


SERVICE_KIND = "service"  # the contract's SC_API_TOKEN
TOKEN_KIND = "token"  # a personal API token: acts as its account
SERVICE_USERNAME = "api-token"
SERVICE_NAME = "API令牌"


class User(str):
    """The signed-in identity: a `str` of the display name (so `current_user() or typed_name` and
    JSON/SQLite keep working for callers written when it was a name), with `.username`, `.name`,
    `.role`, `.scope` (what it may see: dashboard/scope.py) and `.kind` ("staff": an account's session;
    "token": an account's personal API token; "service": the SC_API_TOKEN; "display": a display link,
    always a viewer)."""

    username: str
    name: str
    role: str
    kind: str
    scope: Scope

    def __new__(cls, username: str, name: str, role: str, kind: str = "staff", scope: Scope = EVERYTHING) -> User:
        obj = super().__new__(cls, name)
        obj.username, obj.name, obj.role, obj.kind, obj.scope = username, name, role, kind, scope
        return obj

    def can(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


def safe_next(raw: str | None) -> str:
    """A path of this site to go to after sign-in; "/" for anything else (other hosts, schemes,
    `//host`, backslashes, control characters such as tab or newline that browsers strip)."""
    if not raw or len(raw) > 2000:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw) or "\\" in raw:
        return "/"
    if not raw.startswith("/") or raw.startswith("//"):
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return "/"
    if raw.startswith(NO_NEXT):
        return "/"
    return raw


def _security() -> Security | None:
    sec: Security | None = current_app.config.get("SC_SECURITY")
    return sec


def sign_in_required() -> bool:
    sec = _security()
    return sec is not None and sec.sign_in_required()


def bearer() -> str | None:
    """The token of `Authorization: Bearer <token>`, if sent."""
    header = request.headers.get("Authorization", "")
    return (header[7:].strip() or None) if header.startswith("Bearer ") else None


def _token_user(sec: Security) -> User | None:
    """The identity of this /api request's bearer token: the service token, or a personal one."""
    token = bearer()
    if not token:
        return None
    if sec.settings.api_token and hmac.compare_digest(token.encode(), sec.settings.api_token.encode()):
        return User(SERVICE_USERNAME, SERVICE_NAME, "operator", SERVICE_KIND)
    found = sec.sessions.token_user(token)
    if found is None:
        return None
    acc = sec.accounts.get(found[0])
    if acc is None:  # the account was removed: its tokens go with it
        sec.sessions.revoke_token(found[0])
        return None
    g.sc_token_id = found[1]
    return User(acc.username, acc.name, acc.role, TOKEN_KIND, acc.scope)  # the account's scope now


def acting_as(by: str | None, note: str | None) -> tuple[str | None, str | None]:
    """(who an action is recorded under, its note). Signed in (session or token): the identity, and a
    different name typed in the body's "by" kept only as a remark in the note. Otherwise (the
    loopback-only dev run) the typed name."""
    user = current_user()
    if user is None:
        return by, note
    if by and by != user.name:
        note = f"（署名：{by}）{note or ''}"
    return user, note


def load_user() -> User | None:
    """The identity of this request (None if none or ended); cached per request. On /api a bearer
    token, when sent, is the identity (a wrong one: None); otherwise, and on every other path, the
    session cookie's (`session_user`)."""
    if "sc_user" in g:
        user: User | None = g.sc_user
        return user
    sec = _security()
    user = session_user()
    if sec is not None and request.path.startswith("/api/") and bearer():
        user = _token_user(sec)
    g.sc_user = user
    return user


def session_user() -> User | None:
    """The identity of this request's session cookie alone (None if none or ended); cached per request."""
    if "sc_session_user" in g:
        cached: User | None = g.sc_session_user
        return cached
    sec = _security()
    user = None
    sess: Session | None = None
    if sec is not None:
        sess = sec.sessions.get(request.cookies.get(COOKIE))
        if sess is not None and sess.kind == DISPLAY_KIND:
            label = sec.sessions.link_label(sess.link_id or "") or "大屏"
            user = User(sess.username, label, "viewer", DISPLAY_KIND)
        elif sess is not None:
            acc = sec.accounts.get(sess.username)
            if acc is None:  # the account was removed while this session was open
                sec.sessions.end_user(sess.username)
                sess = None
            else:
                user = User(acc.username, acc.name, acc.role, scope=acc.scope)
    g.sc_session_user = user
    g.sc_session = sess
    return user


def current_user() -> User | None:
    """The signed-in user (inside a request), if any."""
    try:
        return load_user()
    except RuntimeError:  # outside a request
        return None


def has_role(role: str) -> bool:
    """Whether this request may do what `role` may: always when no sign-in is required."""
    try:
        if not sign_in_required():
            return True
    except RuntimeError:
        return False
    user = current_user()
    return user is not None and user.can(role)


def check_role(role: str) -> bool:
    """`has_role`, and a refusal is written to the audit log: for callbacks that answer a refusal
    on the page instead of an HTTP 403."""
    if has_role(role):
        return True
    user = current_user()
    from dashboard.security import audit_refusal

    audit_refusal("role", 403, need=role, have=user.role if user else None)
    return False


def require_role(role: str) -> User | None:
    """The user, or a 403 (werkzeug Forbidden) when the signed-in account is below `role`."""
    if not has_role(role):
        user = current_user()
        from dashboard.security import audit_refusal

        audit_refusal("role", 403, need=role, have=user.role if user else None)
        raise Forbidden(f"this needs the {role} role")
    return current_user()


def _audit_refused(action: str, **fields: object) -> None:
    """A refused sign-in step, within the per-address flood limit of the audit log."""
    import time as _time

    from dashboard.security import audit

    sec = _security()
    if sec is not None:
        ok, suppressed = sec.refusals.admit((request.remote_addr or "?", action), _time.monotonic())
        if not ok:
            return
        if suppressed:
            fields["suppressed_before"] = suppressed
    audit(action, outcome="refused", **fields)  # type: ignore[arg-type]


def _cookie_secure() -> bool:
    return request.is_secure


def _page(next_url: str, csrf: str, error: str = "", status: int = 200, hint: str = "") -> Response:
    err = f'<div class="err">{html.escape(error)}</div>' if error else ""
    body = PAGE.format(title="登录", style=STYLE, next=html.escape(next_url, quote=True),
                       csrf=html.escape(csrf, quote=True), error=err, hint=hint)
    resp = Response(body, status=status, mimetype="text/html")
    resp.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="Strict", secure=_cookie_secure(),
                    path="/login")
    return resp


def _message(title: str, message: str, status: int) -> Response:
    return Response(MESSAGE_PAGE.format(title=html.escape(title), style=STYLE, message=html.escape(message)),
                    status=status, mimetype="text/html")


def register_login(server: Flask, sec: Security) -> None:
    accounts: Accounts = sec.accounts
    sessions: SessionStore = sec.sessions

    def hint() -> str:
        return "" if accounts.any() else (
            '<div class="hint">尚无账号: 请运行 smartcommunity users add 账号 --name 姓名</div>')

    def start_session(resp: Response, username: str, kind: str = "staff", link_id: str | None = None,
                      max_age: int | None = None) -> None:
        sessions.end(request.cookies.get(COOKIE))  # never keep a session id from before sign-in
        token, s = sessions.create(username, kind, link_id, request.remote_addr)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=_cookie_secure(), path="/",
                        max_age=max_age)
        resp.set_cookie(CSRF_COOKIE, s.csrf, httponly=False, samesite="Strict", secure=_cookie_secure(), path="/",
                        max_age=max_age)

    @server.before_request
    def _gate() -> Response | tuple[Response, int] | None:
        path = request.path
        if path.startswith(OPEN_PREFIXES):
            return None
        user = load_user()
        sess: Session | None = g.sc_session
        if (request.method not in ("GET", "HEAD", "OPTIONS") and path.startswith(CALLBACK_PREFIXES)
                and sess is not None):
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
                from dashboard.security import audit_refusal, json_error

                audit_refusal("csrf", 403)
                return json_error(403, "missing or wrong CSRF token (reload the page)")
        if user is not None or not sec.sign_in_required():
            return None
        if path.startswith(CALLBACK_PREFIXES):
            from dashboard.security import json_error

            return json_error(401, "sign in first")
        return redirect(f"/login?next={quote(safe_next(request.full_path.rstrip('?')))}")  # type: ignore[return-value]

    @server.get("/login")
    def _login_form() -> Response:
        csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
        return _page(safe_next(request.args.get("next")), csrf, hint=hint())

    @server.post("/login")
    def _login() -> Response:

        nxt = safe_next(request.form.get("next"))
        username = request.form.get("username", "")[:64]
        password = request.form.get("password", "")[:1024]
        addr = request.remote_addr or "?"
        cookie_csrf = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        form_csrf = request.form.get("csrf", "")
        if not cookie_csrf or not hmac.compare_digest(cookie_csrf.encode(), form_csrf.encode()):
            _audit_refused("signin", actor=username or "anonymous", via="login", status=400,
                  reason="missing or wrong CSRF token")
            return _page(nxt, secrets.token_urlsafe(24), "登录表单已过期, 请重新输入", 400, hint())
        with _SIGNIN_LOCKS[hash(username) % len(_SIGNIN_LOCKS)]:  # parallel guesses wait their turn
            return _attempt(nxt, username, password, addr, cookie_csrf)

    def _attempt(nxt: str, username: str, password: str, addr: str, cookie_csrf: str) -> Response:
        from dashboard.security import audit

        wait = sessions.signin_wait(username, addr)
        if wait > 0:
            sessions.signin_failed(username, addr)  # trying while held back counts too
            wait = sessions.signin_wait(username, addr)
            _audit_refused("signin", actor=username or "anonymous", via="login", status=429,
                  reason="throttled", wait_s=round(wait, 1))
            resp = _page(nxt, cookie_csrf, f"尝试次数过多, 请 {math.ceil(wait)} 秒后再试", 429, hint())
            resp.headers["Retry-After"] = str(math.ceil(wait))
            return resp
        acc = accounts.authenticate(username, password)
        if acc is None:
            sessions.signin_failed(username, addr)
            _audit_refused("signin", actor=username or "anonymous", via="login", status=401,
                  reason="wrong account or password")
            return _page(nxt, cookie_csrf, "账号或密码错误", 401, hint())
        sessions.signin_succeeded(username)
        sessions.purge_expired()
        resp = redirect(nxt)
        start_session(resp, acc.username)  # type: ignore[arg-type]
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        audit("signin", actor=acc.username, role=acc.role, via="login", status=302)
        return resp  # type: ignore[return-value]

    @server.get("/logout")
    def _logout_form() -> Response:
        user = load_user()
        sess: Session | None = g.sc_session
        if user is None or sess is None:
            return redirect("/login")  # type: ignore[return-value]
        body = LOGOUT_PAGE.format(title="退出", style=STYLE, who=html.escape(f"{user.name} ({user.role})"),
                                  csrf=html.escape(sess.csrf))
        return Response(body, mimetype="text/html")

    @server.post("/logout")
    def _logout() -> Response:
        from dashboard.security import audit

        user = load_user()
        sess: Session | None = g.sc_session
        sent = request.form.get("csrf") or request.headers.get(CSRF_HEADER) or ""
        if sess is not None and not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
            _audit_refused("signout", actor=user.username if user else "anonymous", via="login",
                           status=403, reason="missing or wrong CSRF token")
            return _message("退出失败", "表单已过期, 请重新打开 /logout", 403)
        if sess is not None:
            sessions.end(request.cookies.get(COOKIE))
            audit("signout", actor=user.username if user else "?", role=user.role if user else None, via="login")
        resp = redirect("/login")
        resp.delete_cookie(COOKIE, path="/")
        resp.delete_cookie(CSRF_COOKIE, path="/")
        return resp  # type: ignore[return-value]

    @server.get("/display/<token>")
    def _display(token: str) -> Response:
        from dashboard.security import audit

        link = sessions.link_for(token)
        if link is None:
            _audit_refused("display.signin", actor="anonymous", via="login", status=404,
                  reason="unknown or revoked display link")
            return _message("显示链接无效", "该显示链接不存在或已被撤销, 请联系管理员重新生成。", 404)
        link_id, label = link
        resp = redirect("/wall")
        start_session(resp, f"display:{link_id}", DISPLAY_KIND, link_id, max_age=DISPLAY_COOKIE_MAX_AGE)  # type: ignore[arg-type]
        resp.headers["Cache-Control"] = "no-store"
        audit("display.signin", actor=f"display:{link_id}", role="viewer", via="login", status=302, label=label)
        return resp  # type: ignore[return-value]
