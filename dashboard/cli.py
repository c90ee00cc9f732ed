"""`smartcommunity dashboard`: serve the one map and /api on 127.0.0.1:SC_HTTP_PORT."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Any

from core.settings import Settings
from dashboard.accounts import Accounts, accounts_path

log = logging.getLogger(__name__)

SERVER_THREADS = 8  # Dash callbacks, /api and the health probes run concurrently


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "dashboard",
        help="serve the one-map dashboard (综合一张图) and the JSON /api",
        description="Serve the dashboard and /api. Binds loopback unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default SC_HTTP_PORT)")
    p.set_defaults(func=run)

    u = sub.add_parser("users", help="staff accounts that sign in to the dashboard pages")
    usub = u.add_subparsers(dest="action", required=True)
    add = usub.add_parser("add", help="add an account or set its password (read from stdin or a prompt)")
    add.add_argument("username")
    add.add_argument("--name", default="", help="display name, e.g. 张三 (signs acknowledgements)")
    add.set_defaults(func=users_add)
    usub.add_parser("list", help="list accounts").set_defaults(func=users_list)
    rm = usub.add_parser("remove", help="remove an account")
    rm.add_argument("username")
    rm.set_defaults(func=users_remove)


def _accounts(settings: Settings) -> Accounts:
    return Accounts(accounts_path(settings.data_path))


def users_add(args: argparse.Namespace, settings: Settings) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        _accounts(settings).add(args.username, args.name, password)
    except ValueError as exc:
        print(f"smartcommunity users add: {exc}", file=sys.stderr)
        return 2
    print(f"account {args.username} saved")
    return 0


def users_list(args: argparse.Namespace, settings: Settings) -> int:
    for username, name in _accounts(settings).list():
        print(f"{username}\t{name}")
    return 0


def users_remove(args: argparse.Namespace, settings: Settings) -> int:
    if not _accounts(settings).remove(args.username):
        print(f"no account {args.username}", file=sys.stderr)
        return 2
    return 0


def serve(app: Any, host: str, port: int) -> None:
    """Waitress when installed (a production WSGI server); else Flask's threaded server."""
    try:
        from waitress import serve as waitress_serve
    except ImportError:
        log.warning("waitress not installed: using Flask's threaded development server")
        app.server.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)
        return
    waitress_serve(
        app.server,
        host=host,
        port=port,
        threads=SERVER_THREADS,
        ident="smartcommunity",
        channel_timeout=60,
        connection_limit=200,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.app import create_app

    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_token:
        log.warning("binding %s without SC_API_TOKEN: the /api is open to the network", args.host)
    app = create_app(settings)
    port = args.port or settings.http_port
    log.info("dashboard on http://%s:%d/ (wall view: /wall)", args.host, port)
    try:
        serve(app, args.host, port)
    finally:
        app.server.config["SC_DASHBOARD"].close()
    return 0
