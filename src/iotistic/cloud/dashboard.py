"""Serves the dashboard's build (a Vite single-page app) at `/`, beside the API.

It is the router's default: it only sees requests no route took, so the API's routes, their 404s and 405s are
unchanged, and paths under the API's own prefixes keep their JSON 404. Hashed assets (`/assets/*`) are cached for
a year; `index.html` is revalidated on every load so a new build is picked up at once; any other page path gets
`index.html` (the client-side router draws it). Without a build, pages get a short HTML note on how to make one.

Where the build is: DASHBOARD_DIR, else the copy bundled in the wheel (`iotistic/cloud/dashboard_dist`, put there
by hatch_build.py), else `dashboard/dist` of the source checkout this package runs from (`npm run build`).
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "dashboard_dist"
# Never answered with the dashboard: the API's own namespaces keep their JSON errors.
RESERVED_PREFIXES = ("/api", "/ws", "/metrics", "/docs", "/redoc", "/openapi.json", "/health", "/ready")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The dashboard loads nothing from elsewhere. MUI's styling engine (emotion) injects <style> elements, hence
# 'unsafe-inline' for styles only; scripts come from files of this origin alone.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The setup link's token is in the fragment, which is never sent; no referrer at all keeps page paths private.
    "Referrer-Policy": "no-referrer",
}


def default_dashboard_dir() -> Path | None:
    if (BUNDLED_DIR / "index.html").is_file():
        return BUNDLED_DIR
    checkout = Path(__file__).resolve().parents[3]  # src/iotistic/cloud/dashboard.py -> the repository
    if (checkout / "pyproject.toml").is_file() and (checkout / "dashboard" / "package.json").is_file():
        return checkout / "dashboard" / "dist"
    return None


def _reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESERVED_PREFIXES)


def _names_a_file(path: str) -> bool:
    """`/assets/x.js` or `/favicon.svg` name files (a missing one is a 404); `/devices/abc` is a page."""
    last = path.rsplit("/", 1)[-1]
    return path.startswith("/assets/") or mimetypes.guess_type(last)[0] is not None


NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Iotistic: dashboard not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem">
<h1>The dashboard has not been built</h1>
<p>The API is running (<a href="/docs">API docs</a>), but this installation has no dashboard build.</p>
<p>From the source checkout, build it once (Node.js 20 and npm), then reload this page:</p>
<pre>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p><code>bash scripts/up.sh</code> does this for you. A build elsewhere can be served with
<code>DASHBOARD_DIR=/path/to/dist</code>.</p>
</body></html>
"""


class DashboardFiles:
    """The ASGI app placed as the router's default (see the module's docstring)."""

    def __init__(self, directory: Path | None, fallback: ASGIApp) -> None:
        self.directory = directory
        self.fallback = fallback
        self._files: StaticFiles | None = None

    def _static(self) -> StaticFiles | None:
        """The build's files, once index.html exists (checked per request until then, so building the dashboard
        while the API runs needs no restart)."""
        if self._files is None and self.directory is not None and (self.directory / "index.html").is_file():
            self._files = StaticFiles(directory=self.directory)
        return self._files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or _reserved(path):
            await self.fallback(scope, receive, send)
            return
        response = await self._response(path, scope)
        await response(scope, receive, send)

    async def _response(self, path: str, scope: Scope) -> Response:
        files = self._static()
        if files is None:
            if _names_a_file(path):
                raise HTTPException(404, "not found")
            return HTMLResponse(NOT_BUILT_PAGE, headers=PAGE_HEADERS)
        try:
            response = await files.get_response(files.get_path(scope), scope)
        except HTTPException as exc:
            if exc.status_code != 404 or _names_a_file(path):
                raise
            response = await files.get_response("index.html", scope)
            response.headers.update(PAGE_HEADERS)
            response.headers["Cache-Control"] = REVALIDATE
            return response
        if path.startswith("/assets/"):
            response.headers["Cache-Control"] = IMMUTABLE
        else:
            response.headers["Cache-Control"] = REVALIDATE
            if path in ("/", "/index.html"):
                response.headers.update(PAGE_HEADERS)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_dashboard(app: FastAPI, directory: Path | None) -> None:
    if directory is None:
        log.warning("no dashboard build is bundled with this installation: set DASHBOARD_DIR to serve one")
    elif not (directory / "index.html").is_file():
        log.warning("the dashboard is not built (no %s): `/` shows how to build it", directory / "index.html")
    app.router.default = DashboardFiles(directory, app.router.default)
