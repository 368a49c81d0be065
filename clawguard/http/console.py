"""The web console's static files, shipped in the package (clawguard/console/), no key needed.

The page signs in with an API key that it sends on every /api/ call; these files
hold nothing secret. Every answer carries a Content-Security-Policy that runs
only the console's own script file (no inline script, no eval) and lets it talk
only to this daemon.
"""

from __future__ import annotations

import functools
import importlib.resources

from aiohttp import web

from clawguard.core import errors
from clawguard.http import middleware

FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated, so an upgrade's files are used at once
}


@functools.cache
def _content(name: str) -> bytes:
    return importlib.resources.files("clawguard.console").joinpath(name).read_bytes()


def _serve(name: str) -> web.Response:
    if name not in FILES:
        raise errors.NotFound(f"the console has no file {name}")
    return web.Response(body=_content(name), content_type=FILES[name], charset="utf-8",
                        headers=SECURITY_HEADERS)


async def index(request: web.Request) -> web.Response:
    return _serve("index.html")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/console/")


async def asset(request: web.Request) -> web.Response:
    return _serve(request.match_info["name"])


ROUTES = [
    web.get("/console", middleware.serve(redirect)),
    web.get("/console/", middleware.serve(index)),
    web.get("/console/{name}", middleware.serve(asset)),
]
