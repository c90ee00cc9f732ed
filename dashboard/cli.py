"""`smartcommunity dashboard`: serve the one map and /api on 127.0.0.1:SC_HTTP_PORT."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from smartcommunity.settings import Settings

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
