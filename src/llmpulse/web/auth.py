"""Credentials for the dashboard and API: a bearer token, basic auth, or a session cookie.

Checked when any credential is configured, and required (config validation) whenever the
server listens off loopback, unless the user opted out with ``web.auth: false``. The public
status page, its API, badges, static assets and /healthz never need credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from llmpulse.config import WebConfig

PUBLIC_PREFIXES = ("/static/", "/badge/")
PUBLIC_PATHS = frozenset({"/status", "/api/v1/status", "/api/v1/statuspage", "/healthz", "/login"})
COOKIE = "llmpulse_session"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>llmpulse: sign in</title><link rel="icon" href="/static/favicon.svg">
<link rel="stylesheet" href="/static/app.css"></head>
<body class="login"><form method="get" action="/login"><h1>llmpulse</h1>
<label>Access token <input type="password" name="token" autocomplete="current-password"
autofocus required></label><button type="submit">Sign in</button>{error}</form></body></html>"""


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class AuthMiddleware:
    """Pure ASGI middleware (no response buffering, so streaming responses stay streaming)."""

    def __init__(self, app: ASGIApp, web: WebConfig) -> None:
        self.app = app
        self.web = web
        secret = (web.token or "") + "\0" + (web.username or "") + "\0" + (web.password or "")
        # The cookie holds a digest of the credentials, never a credential itself; changing
        # the token or password signs every browser out.
        self._session = hashlib.sha256(b"llmpulse-session\0" + secret.encode()).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.web.requires_auth:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/login":
            await self._login(scope)(scope, receive, send)
            return
        if is_public(path) or self.authorized(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        await self._challenge(path)(scope, receive, send)

    def authorized(self, headers: Headers) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self.web.token:
            return hmac.compare_digest(value.strip().encode(), self.web.token.encode())
        if scheme.lower() == "basic" and self.web.password:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(
                user.encode(), (self.web.username or "").encode()
            ) & hmac.compare_digest(password.encode(), self.web.password.encode())
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._session.encode())

    def _login(self, scope: Scope) -> Response:
        """``/login?token=...`` trades the token for a session cookie (browsers can't send a
        bearer header on page loads)."""
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
        token = (query.get("token") or [""])[0]
        if not token:
            return HTMLResponse(_LOGIN_PAGE.format(error=""))
        if not self.web.token or not hmac.compare_digest(token.encode(), self.web.token.encode()):
            return HTMLResponse(_LOGIN_PAGE.format(error="<p>Wrong token.</p>"), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="strict")
        return response

    def _challenge(self, path: str) -> Response:
        if not path.startswith(("/api/", "/metrics", "/openapi.json")) and self.web.token:
            return RedirectResponse("/login", status_code=303)
        schemes = []
        if self.web.token:
            schemes.append('Bearer realm="llmpulse"')
        if self.web.password:
            schemes.append('Basic realm="llmpulse", charset="UTF-8"')
        return JSONResponse(
            {"detail": "credentials required: a bearer token or basic auth"},
            status_code=401,
            headers={"WWW-Authenticate": ", ".join(schemes)},
        )


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
