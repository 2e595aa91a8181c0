"""The web console at ``/`` and Swagger UI at ``/docs``, both from files inside the package.

The console is static: ES modules and vendored libraries under ``agent_sessions/console/static``
(no build step, nothing fetched from a CDN, so both work on an offline host). It speaks the same
HTTP API as any client; nothing here knows about sessions. None of these routes is in the
OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "console" / "static"
ASSETS = "/console"

# The console loads only its own files; the API is same-origin. Markdown is sanitised with
# DOMPurify before it is inserted, and this keeps an injected <script> or style from running.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONSOLE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def install(app: FastAPI) -> None:
    """Serve the console at ``/`` (its assets under ``/console``) and Swagger UI at ``/docs``.

    The assets are a route over ``StaticFiles`` (safe paths, ``ETag`` and 304s) rather than a
    mount, so that every entry of the route table has a path and methods like the others.
    """
    static = StaticFiles(directory=STATIC)
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/vendor/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=oauth2_redirect,
            swagger_ui_parameters={"validatorUrl": None},  # no call to swagger.io's validator
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(f"{ASSETS}/{{path:path}}", include_in_schema=False)
    async def asset(path: str, request: Request) -> Response:
        response = await static.get_response(path, request.scope)
        # Revalidated on every load (a 304 when unchanged): an upgraded service is never
        # paired with the previous version's modules from a browser's cache.
        response.headers["cache-control"] = "no-cache"
        return response
