"""Sign-in for the dashboard pages.

Required when `SC_API_TOKEN` is set or any staff account exists: the pages and their callbacks
(acknowledge, resolve) then need a signed-in account, while `/api` keeps its bearer token and
`/api/health`, `/metrics` and the static files stay open.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from flask import Flask, Response, redirect, request, session

from core.settings import Settings
from dashboard.accounts import Accounts, accounts_path, secret_key

OPEN_PREFIXES = ("/login", "/logout", "/api/", "/metrics", "/assets/", "/_dash-component-suites/",
                 "/_favicon.ico", "/map/", "/d/")  # /d/: the field page, its signed link is its credential
CALLBACK_PREFIXES = ("/_dash-update-component", "/_dash-layout", "/_dash-dependencies")

PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>登录 · 车城路街道 综合一张图</title>
<style>body{{background:#070d18;color:#e6edf7;font-family:"Noto Sans CJK SC",sans-serif;display:flex;
align-items:center;justify-content:center;height:100vh;margin:0}}form{{background:#0e1726;padding:32px 40px;
border-radius:10px;border:1px solid #22395a;width:320px}}h1{{font-size:22px;margin:0 0 20px}}
label{{display:block;margin:12px 0 4px;color:#8da2bf}}input{{width:100%;padding:8px;font-size:16px;
box-sizing:border-box;background:#070d18;color:#e6edf7;border:1px solid #22395a;border-radius:4px}}
button{{margin-top:20px;width:100%;padding:10px;font-size:17px;background:#2b6fd6;color:#fff;border:0;
border-radius:4px}}.err{{color:#ff6b6b;margin-top:12px}}.hint{{color:#8da2bf;font-size:13px;margin-top:14px}}</style>
</head><body><form method="post" action="/login"><h1>车城路街道 综合一张图</h1>
<input type="hidden" name="next" value="{next}"><label for="u">账号</label>
<input id="u" name="username" autocomplete="username" autofocus><label for="p">密码</label>
<input id="p" name="password" type="password" autocomplete="current-password">
<button type="submit">登录</button>{error}{hint}</form></body></html>"""


def current_user() -> str | None:
    """The signed-in account's display name (inside a request), if any."""
    try:
        user = session.get("user")
    except RuntimeError:
        return None
    return user.get("name") if isinstance(user, dict) else None


def register_login(server: Flask, settings: Settings) -> None:
    accounts = Accounts(accounts_path(settings.data_path))
    server.secret_key = secret_key(settings.data_path)
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")

    def required() -> bool:
        return bool(settings.api_token) or accounts.any()

    def page(next_url: str, error: str = "", status: int = 200) -> Response:
        hint = "" if accounts.any() else (
            '<div class="hint">尚无账号: 请运行 smartcommunity users add 账号 --name 姓名</div>')
        err = f'<div class="err">{html.escape(error)}</div>' if error else ""
        body = PAGE.format(next=html.escape(next_url, quote=True), error=err, hint=hint)
        return Response(body, status=status, mimetype="text/html")

    @server.before_request
    def _gate() -> Response | None:
        path = request.path
        if path.startswith(OPEN_PREFIXES) or not required() or session.get("user"):
            return None
        if path.startswith(CALLBACK_PREFIXES):
            return Response('{"error": "sign in first"}', status=401, mimetype="application/json")
        return redirect(f"/login?next={quote(request.full_path.rstrip('?'))}")  # type: ignore[return-value]

    @server.get("/login")
    def _login_form() -> Response:
        return page(request.args.get("next", "/"))

    @server.post("/login")
    def _login() -> Response:
        nxt = request.form.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"  # no open redirect
        name = accounts.verify(request.form.get("username", ""), request.form.get("password", ""))
        if name is None:
            return page(nxt, "账号或密码错误", 401)
        session.clear()
        session["user"] = {"u": request.form["username"], "name": name}
        return redirect(nxt)  # type: ignore[return-value]

    @server.get("/logout")
    def _logout() -> Response:
        session.clear()
        return redirect("/login")  # type: ignore[return-value]
