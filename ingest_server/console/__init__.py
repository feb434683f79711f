"""The web console: static pages served by the API process, nothing from the internet.

    GET /                       -> /console/
    GET /console/               the single page (login, overview, equipment, losses,
                                energy, evidence, data quality; Chinese by default,
                                English switch)
    GET /console/static/...     its script and style
    GET /console/vendor/plotly.min.js   plotly.js from the installed `plotly` wheel

The page talks to /api/v1 with the token of a console login (POST /api/v1/login), kept
in the tab's sessionStorage. None of these routes are in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

STATIC = Path(__file__).with_name("static")

# Served with every response of the app: the console loads only its own files.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# plotly.js sets inline styles on the elements it draws; scripts come only from here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


def plotly_js() -> Path:
    """plotly.min.js as the `plotly` wheel ships it."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        msg = f"{path} is missing: reinstall the server extra (factory-evidence[server])"
        raise FileNotFoundError(msg)
    return path


def mount(app: FastAPI) -> None:
    app.add_middleware(GZipMiddleware, minimum_size=1024)

    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/console"):
            response.headers["Content-Security-Policy"] = CSP
        return response

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.api_route("/console", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/console/", methods=["GET", "HEAD"], include_in_schema=False)
    def _page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    plotly = plotly_js()

    @app.get("/console/vendor/plotly.min.js", include_in_schema=False)
    def _plotly() -> FileResponse:
        # the URL carries plotly's version (index.html), so it may be cached for a day
        return FileResponse(
            plotly, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
