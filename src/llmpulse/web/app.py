"""The web application: dashboard pages, JSON API, Prometheus metrics and the public status page.

``create_app`` builds one of two apps over a ``View``: the full dashboard (behind credentials
where configured) or, with ``status_only``, just the public status page a team can publish.
Every asset is served from the package; nothing is fetched from a CDN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders

from llmpulse.alerts.status import Status
from llmpulse.config.web import WebConfig
from llmpulse.web import badge, pagerduty, schemas
from llmpulse.web.api import private_routes, public_routes
from llmpulse.web.auth import ASGIApp, AuthMiddleware, Clock, Receive, Scope, Send
from llmpulse.web.view import View

if TYPE_CHECKING:
    from llmpulse.telemetry.prometheus import MetricsExporter

STATIC = Path(__file__).parent / "static"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Nothing loads from anywhere but here; no inline script or style.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


def create_app(
    view: View,
    web: WebConfig,
    *,
    exporter: MetricsExporter | None = None,
    status_only: bool = False,
    clock: Clock = time.monotonic,
) -> FastAPI:
    """The dashboard app (or the status page alone); ``clock`` times sign-in sessions and the
    failed-sign-in limiter (tests pass their own)."""
    app = FastAPI(
        title="llmpulse",
        version=version("llmpulse"),
        description="Monitoring of LLM APIs: targets, checks, rolling metrics, alerts, status.",
        # The interactive docs pages load their scripts from a CDN: off. /openapi.json stays.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(public_routes(view))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", response_model=schemas.Health, tags=["public"])
    def healthz() -> schemas.Health:
        return schemas.Health(ok=True)

    @app.get(
        "/badge/{name:path}.svg",
        tags=["public"],
        response_class=Response,
        responses={
            200: {"content": {"image/svg+xml": {}}},
            404: {"model": schemas.Problem, "description": "Not a badge path"},
        },
    )
    def status_badge(
        name: Annotated[str, PathParam(description="Target name")], label: str | None = None
    ) -> Response:
        """A status badge for a README; unknown targets show "unknown"."""
        status = view.statuses().get(name)
        svg = badge.render((label or name)[:80], status.status if status else Status.UNKNOWN)
        return Response(
            svg,
            media_type="image/svg+xml",
            headers={"Cache-Control": "no-cache, max-age=0"},
        )

    pages = {"/status": "status.html"}
    if status_only:
        pages["/"] = "status.html"
    else:
        app.include_router(private_routes(view))
        app.include_router(pagerduty.routes(view))  # public: its signature authenticates it
        pages.update(
            {
                "/": "overview.html",
                "/alerts": "alerts.html",
                "/cost": "cost.html",
                "/slos": "slos.html",
                "/gateway": "gateway.html",
                "/failover": "failover.html",
            }
        )

        @app.get("/targets/{name:path}", include_in_schema=False)
        def target_page(name: str) -> FileResponse:
            return FileResponse(STATIC / "target.html")

        if exporter is not None:

            @app.get("/metrics", include_in_schema=False)
            def prometheus_metrics(request: Request) -> Response:
                body, content_type = exporter.render(request.headers.get("accept"))
                return Response(body, media_type=content_type)

    for route, page in pages.items():
        app.add_api_route(route, _page(page), include_in_schema=False, methods=["GET"])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged by the server; the client gets no traceback (it might hold paths or data).
        # Starlette answers this outside every middleware, hence the headers here.
        return JSONResponse(
            {"detail": "internal error"}, status_code=500, headers=_SECURITY_HEADERS
        )

    if not status_only:
        app.add_middleware(AuthMiddleware, web=web, clock=clock)
    # Added last, so outermost: the sign-in page, challenges and 429s get the headers too.
    app.add_middleware(SecurityHeaders)
    return app


class SecurityHeaders:
    """Adds ``_SECURITY_HEADERS`` to every response that does not set them itself.

    Pure ASGI: it touches only the start message, so streamed responses stay streamed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _page(name: str) -> Callable[[], FileResponse]:
    def page() -> FileResponse:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return page
