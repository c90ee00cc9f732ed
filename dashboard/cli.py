"""`smartcommunity dashboard`: serve the one map and /api on 127.0.0.1:SC_HTTP_PORT."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path
from typing import Any

from core.contract import COMMUNITIES, KINDS
from core.settings import Settings
from core.staff import DEFAULT_ROLE, ROLES, Accounts, Scope, open_accounts
from core.timebase import iso
from dashboard.audit import AuditLog, audit_path
from dashboard.sessions import SessionStore, open_sessions

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
    add.add_argument("--role", choices=ROLES, default=None,
                     help=f"viewer, operator or admin (new accounts: {DEFAULT_ROLE}; kept when re-set)")
    add.add_argument("--person", default=None, help="the on-call roster's id of this person (e.g. yl_duty): "
                                                    "they set their own notification preferences on /settings")
    add.set_defaults(func=users_add)
    usub.add_parser("list", help="list accounts (username, name, role, scope)").set_defaults(func=users_list)
    rm = usub.add_parser("remove", help="remove an account (its open sessions end at once)")
    rm.add_argument("username")
    rm.set_defaults(func=users_remove)
    ro = usub.add_parser("role", help="set an account's role: viewer (look), operator (act), admin (manage)")
    ro.add_argument("username")
    ro.add_argument("role", choices=ROLES)
    ro.set_defaults(func=users_role)
    sc = usub.add_parser(
        "scope",
        help="limit what an account sees to some communities and/or device kinds; --all to clear",
        description="A scoped account (a community's grid worker, a gas company) sees on every page, on "
        "the map, in /api (session or personal token), in the report and the inbox only the alerts, devices "
        "and places of its communities and kinds, and acts only on those; anything else answers 404. "
        "Without options: print the account's scope. Takes effect at the account's next request.",
    )
    sc.add_argument("username")
    sc.add_argument("--community", nargs="+", action="extend", default=[], metavar="SLUG",
                    help=f"communities it sees ({', '.join(COMMUNITIES)}); all when none")
    sc.add_argument("--kind", nargs="+", action="extend", default=[], metavar="KIND",
                    help=f"device kinds it sees ({', '.join(KINDS)}); all when none")
    sc.add_argument("--all", action="store_true", help="clear the scope: the whole street")
    sc.set_defaults(func=users_scope)
    pe = usub.add_parser("person", help="link an account to a person of the on-call roster (--none: unlink)")
    pe.add_argument("username")
    pe.add_argument("person", nargs="?", help="a roster id under people: (e.g. yl_duty)")
    pe.add_argument("--none", action="store_true", help="no longer linked to a roster person")
    pe.set_defaults(func=users_person)
    dl = usub.add_parser(
        "display-link",
        help="print a URL that opens the wall as a read-only viewer (no typing); --revoke to withdraw it",
        description="Without options: make a new display link and print its URL. The URL is the secret: "
        "anyone with it sees the wall (read-only) until it is revoked.",
    )
    dl.add_argument("--label", default="指挥中心大屏", help="what the link is for, shown in the audit log")
    dl.add_argument("--base-url", default=None,
                    help="how the wall PC reaches the dashboard (default http://127.0.0.1:SC_HTTP_PORT)")
    dl.add_argument("--list", action="store_true", help="list display links and their open sessions")
    dl.add_argument("--revoke", metavar="ID", default=None, help="revoke a link by id (or 'all'); its screens "
                    "are signed out at their next refresh")
    dl.set_defaults(func=users_display_link)
    tk = usub.add_parser(
        "token",
        help="print a new personal /api token of an account; --list, --revoke to withdraw",
        description="Without options: make a new personal API token of USERNAME and print it (once; only "
        "its hash is kept). The token acts as the account, with the account's role, in "
        "`Authorization: Bearer <token>` on /api.",
    )
    tk.add_argument("username", nargs="?", default=None, help="the account (for --list: optional)")
    tk.add_argument("--label", default="api", help="what the token is for (e.g. the script using it)")
    tk.add_argument("--list", action="store_true", help="list tokens (id, account, label, created, last used)")
    tk.add_argument("--revoke", metavar="ID", default=None, help="revoke one of the account's tokens by id "
                    "(or 'all'); it is refused from the next request on")
    tk.set_defaults(func=users_token)


def _accounts(settings: Settings) -> Accounts:
    return open_accounts(settings)


def _sessions(settings: Settings) -> SessionStore:
    return open_sessions(settings)


def _audit(settings: Settings, action: str, target: str, outcome: str = "ok", **detail: object) -> None:
    try:
        actor = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        actor = "cli"
    AuditLog(audit_path(settings.data_path)).record(action, actor=actor, via="cli", target=target,
                                                    outcome=outcome, **detail)


def _roster_person(settings: Settings, person: str) -> str | None:
    """What is wrong with linking to `person` (not in the roster in force), or None."""
    from alerts.configfile import ConfigError
    from alerts.roster import load_roster

    try:
        roster = load_roster(Path(settings.alerts_roster_file) if settings.alerts_roster_file else None)
    except ConfigError as exc:
        return f"the on-call roster cannot be read: {exc}"
    ids = sorted(p.pid for p in roster.people() if p.pid)
    return None if person in ids else f"no person {person!r} under people: of the roster ({', '.join(ids)})"


def users_add(args: argparse.Namespace, settings: Settings) -> int:
    if args.person and (wrong := _roster_person(settings, args.person)):
        print(f"smartcommunity users add: {wrong}", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    accounts = _accounts(settings)
    existed = accounts.get(args.username) is not None
    try:
        accounts.add(args.username, args.name, password, role=args.role, person=args.person)
    except ValueError as exc:
        print(f"smartcommunity users add: {exc}", file=sys.stderr)
        return 2
    ended = _sessions(settings).end_user(args.username) if existed else 0  # a new password signs everyone out
    acc = accounts.get(args.username)
    _audit(settings, "account.password" if existed else "account.add", args.username,
           role=acc.role if acc else None, sessions_ended=ended, person=acc.person if acc else None)
    print(f"account {args.username} saved ({acc.role if acc else '?'})")
    return 0


def users_list(args: argparse.Namespace, settings: Settings) -> int:
    for acc in _accounts(settings).accounts():
        person = f"\t{acc.person}" if acc.person else ""
        print(f"{acc.username}\t{acc.name}\t{acc.role}\t{acc.scope.describe()}{person}")
    return 0


def users_scope(args: argparse.Namespace, settings: Settings) -> int:
    accounts = _accounts(settings)
    acc = accounts.get(args.username)
    if acc is None:
        print(f"no account {args.username}", file=sys.stderr)
        return 2
    if args.all and (args.community or args.kind):
        print("smartcommunity users scope: --all clears the scope; give it alone", file=sys.stderr)
        return 2
    if not (args.all or args.community or args.kind):
        print(f"{acc.username}\t{acc.scope.describe()}")
        return 0
    try:
        scope = Scope() if args.all else Scope.of(args.community, args.kind)
    except ValueError as exc:
        print(f"smartcommunity users scope: {exc}", file=sys.stderr)
        return 2
    accounts.set_scope(args.username, scope)
    _audit(settings, "account.scope", args.username, old_scope=acc.scope.describe(), new_scope=scope.describe())
    print(f"account {args.username} sees {scope.describe()}")
    return 0


def users_remove(args: argparse.Namespace, settings: Settings) -> int:
    if not _accounts(settings).remove(args.username):
        print(f"no account {args.username}", file=sys.stderr)
        return 2
    store = _sessions(settings)
    ended = store.end_user(args.username)
    tokens = store.revoke_token(args.username)
    _audit(settings, "account.remove", args.username, sessions_ended=ended, tokens_revoked=tokens)
    print(f"account {args.username} removed; {ended} open session(s) ended")
    return 0


def users_role(args: argparse.Namespace, settings: Settings) -> int:
    if not _accounts(settings).set_role(args.username, args.role):
        print(f"no account {args.username}", file=sys.stderr)
        return 2
    _audit(settings, "account.role", args.username, new_role=args.role)
    print(f"account {args.username} is now {args.role}")
    return 0


def users_person(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.person) == bool(args.none):
        print("smartcommunity users person: name a roster person, or --none", file=sys.stderr)
        return 2
    if args.person and (wrong := _roster_person(settings, args.person)):
        print(f"smartcommunity users person: {wrong}", file=sys.stderr)
        return 2
    if not _accounts(settings).set_person(args.username, args.person):
        print(f"no account {args.username}", file=sys.stderr)
        return 2
    _audit(settings, "account.person", args.username, person=args.person)
    print(f"account {args.username} is " + (f"roster person {args.person}" if args.person else "no roster person"))
    return 0


def users_display_link(args: argparse.Namespace, settings: Settings) -> int:
    store = _sessions(settings)
    if args.list:
        for link_id, label, created, open_sessions in store.links():
            print(f"{link_id}\t{label}\t{iso(created)}\t{open_sessions} open")
        return 0
    if args.revoke:
        which = None if args.revoke == "all" else args.revoke
        n = store.revoke_link(which)
        if n == 0:
            print(f"no display link {args.revoke}", file=sys.stderr)
            return 2
        _audit(settings, "display-link.revoke", args.revoke, links=n)
        print(f"revoked {n} display link(s); their screens are signed out at the next refresh")
        return 0
    link_id, token = store.new_link(args.label)
    base = (args.base_url or f"http://127.0.0.1:{settings.http_port}").rstrip("/")
    _audit(settings, "display-link.create", link_id, label=args.label)
    print(f"{base}/display/{token}")
    print(f"display link {link_id} ({args.label}): read-only wall; revoke with "
          f"`smartcommunity users display-link --revoke {link_id}`", file=sys.stderr)
    return 0


def users_token(args: argparse.Namespace, settings: Settings) -> int:
    store = _sessions(settings)
    if args.list:
        for token_id, user, label, created, used in store.tokens(args.username):
            print(f"{token_id}\t{user}\t{label}\t{iso(created)}\t{iso(used) if used else 'never used'}")
        return 0
    if not args.username:
        print("smartcommunity users token: name the account", file=sys.stderr)
        return 2
    if args.revoke:
        n = store.revoke_token(args.username, None if args.revoke == "all" else args.revoke)
        if n == 0:
            print(f"no token {args.revoke} of {args.username}", file=sys.stderr)
            return 2
        _audit(settings, "token.revoke", args.username, token_id=args.revoke, tokens=n)
        print(f"revoked {n} token(s) of {args.username}")
        return 0
    acc = _accounts(settings).get(args.username)
    if acc is None:
        print(f"no account {args.username}", file=sys.stderr)
        return 2
    token_id, token = store.new_token(acc.username, args.label)
    _audit(settings, "token.create", acc.username, token_id=token_id, label=args.label, role=acc.role)
    print(token)
    print(f"token {token_id} of {acc.username} ({acc.role}): Authorization: Bearer <token> on /api; revoke with "
          f"`smartcommunity users token {acc.username} --revoke {token_id}`", file=sys.stderr)
    return 0


def serve(app: Any, host: str, port: int) -> None:
    """Waitress when installed (a production WSGI server); else Flask's threaded server."""
    try:
        from waitress import serve as waitress_serve
    except ImportError:
        log.warning("waitress not installed: using Flask's threaded development server")
        app.server.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)
        return
    from dashboard.security import MAX_BODY

    settings: Settings = app.server.config["SC_DASHBOARD"].settings
    limit = settings.dashboard_connection_limit
    raise_fd_limit(limit + 256)
    # Idle and slow connections cost waitress a socket each, never a thread (a request reaches a thread
    # only once it is complete); poll() instead of select() lifts the 1,024-descriptor ceiling.
    waitress_serve(
        app.server,
        host=host,
        port=port,
        threads=SERVER_THREADS,
        ident="smartcommunity",
        channel_timeout=settings.dashboard_channel_timeout_s,
        connection_limit=limit,
        asyncore_use_poll=True,
        backlog=2048,
        cleanup_interval=10,
        max_request_body_size=max(MAX_BODY, 4 * settings.dispatch_photo_max_bytes),  # field photos
    )


def raise_fd_limit(want: int) -> int:
    """Raise this process's open-file limit towards `want` (up to the hard limit); the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning("open-file limit %d is below the %d connections configured", soft, want)
    return int(soft)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.app import create_app
    from dashboard.security import is_loopback

    app = create_app(settings)
    sec = app.server.config["SC_SECURITY"]
    sec.exposed = not is_loopback(args.host)  # reachable from the network: nobody acts anonymously
    if not sec.sign_in_required():
        log.warning("loopback-only dev run with no staff account: the pages and /api are open to anyone on "
                    "this machine; `smartcommunity users add NAME` turns sign-in on")
    port = args.port or settings.http_port
    log.info("dashboard on http://%s:%d/ (wall view: /wall)", args.host, port)
    try:
        serve(app, args.host, port)
    finally:
        app.server.config["SC_DASHBOARD"].close()
    return 0
