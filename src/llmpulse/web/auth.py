"""Credentials for the dashboard and API: a bearer token, basic auth, or a session cookie.

Checked when any credential is configured, and required (config validation) whenever the
server listens off loopback, unless the user opted out with ``web.auth: false``. The public
status page, its API, badges, static assets and /healthz never need credentials, nor does
PagerDuty's webhook (``web.pagerduty``), which its signature authenticates.

Signing in. Browsers cannot send a bearer header on page loads, so the token is traded for a
session cookie by POSTing the /login form. Never by a URL: a token in a query string sits in
browser history, proxy logs and Referer headers, so ``GET /login?token=`` signs nobody in.

Sessions. The cookie is a random id (``secrets.token_urlsafe``, 256 bits) that this process
keeps with a sliding idle timeout (``web.session_timeout``); it says nothing about the token,
differs per sign-in and per process, and /logout ends it for real. The process holds only
digests of the ids, at most ``MAX_SESSIONS`` (the least recently used goes first). Chosen over
an HMAC keyed by a per-installation secret: ending a signed cookie needs server-side state
anyway, and a secret file is one more secret to protect. The price: a restart signs every
browser out (so changing the token or password, which takes a restart, does too), and
replicas behind a load balancer each know only their own sessions (use sticky sessions, or
bearer tokens, there).

Cookie flags: HttpOnly (scripts never see it), SameSite=Strict (never sent by cross-site
requests: no CSRF on the API, and a cross-site form cannot end a session), Path=/, and Secure
when the request came over https: the scope's scheme, or ``X-Forwarded-Proto: https`` from a
proxy terminating TLS. Trusting that header is harmless here: a client that lies only keeps
its own cookie off plain http.

Guessing. Failed attempts (a wrong token on the form, a wrong bearer or basic header) are
counted per client address by ``FailureLimiter``; past a burst the client gets 429 with
Retry-After, even for a right credential (else the answer would still tell a guess right from
wrong). A valid session cookie is never counted nor refused, and other addresses are not
affected. Stale cookies (after a restart) are not counted: nobody guesses 256 random bits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import math
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from llmpulse.config.web import WebConfig

PUBLIC_PREFIXES = ("/static/", "/badge/")
PAGERDUTY_WEBHOOK = "/api/v1/integrations/pagerduty"
PUBLIC_PATHS = frozenset(
    {"/status", "/api/v1/status", "/api/v1/statuspage", "/healthz", PAGERDUTY_WEBHOOK}
)
# Answered in JSON (a 401 with a challenge) rather than by the sign-in page.
MACHINE_PREFIXES = ("/api/", "/metrics", "/openapi.json")
COOKIE = "llmpulse_session"
MAX_SESSIONS = 10_000
# Ten wrong guesses at once, then one every six seconds (600 an hour) per client address.
BURST = 10
REFILL_S = 6.0
MAX_CLIENTS = 10_000
MAX_FORM_BYTES = 4096
_MAX_NEXT = 2048

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Clock = Callable[[], float]

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>llmpulse: {title}</title><link rel="icon" href="/static/favicon.svg">
<link rel="stylesheet" href="/static/app.css"></head>
<body class="login">{body}</body></html>"""
_LOGIN_FORM = """<form method="post" action="/login"><h1>llmpulse</h1>
<label>Access token <input type="password" name="token" autocomplete="current-password"
autofocus required></label>{next}<button type="submit">Sign in</button>{error}</form>"""
_LOGOUT_FORM = """<form method="post" action="/logout"><h1>llmpulse</h1>
<button type="submit">Sign out</button></form>"""


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Sessions:
    """Signed-in browsers: random ids with a sliding idle timeout, held by this process.

    Keyed by the id's SHA-256, so a lookup's timing or a memory dump reveals no live cookie.
    Ordered by last use: expired ids are dropped from the front, and when ``limit`` ids are
    live the least recently used one makes room.
    """

    def __init__(self, timeout: float, clock: Clock, limit: int = MAX_SESSIONS) -> None:
        self._timeout = timeout
        self._clock = clock
        self._limit = limit
        self._last_used: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last_used)

    def create(self) -> str:
        now = self._clock()
        while self._last_used:
            oldest, used = next(iter(self._last_used.items()))
            if now - used < self._timeout and len(self._last_used) < self._limit:
                break
            del self._last_used[oldest]
        session = secrets.token_urlsafe(32)
        self._last_used[_digest(session)] = now
        return session

    def touch(self, session: str) -> bool:
        """Whether ``session`` is live; if it is, its idle time starts again."""
        key = _digest(session)
        used = self._last_used.get(key)
        if used is None:
            return False
        now = self._clock()
        if now - used >= self._timeout:
            del self._last_used[key]
            return False
        self._last_used[key] = now
        self._last_used.move_to_end(key)
        return True

    def end(self, session: str) -> None:
        self._last_used.pop(_digest(session), None)


class FailureLimiter:
    """A token bucket of failed sign-ins per client address: ``burst`` at once, then one more
    every ``refill_s`` seconds.

    Hand-written (a few lines) rather than a library: it needs a hard bound on the clients it
    remembers, an injectable clock and no background thread; the small rate-limit libraries
    (limits, pyrate-limiter) keep each key until it expires, swept by a timer or thread,
    however many keys arrive meanwhile. At most ``limit`` clients
    are kept, least recently failed dropped first: that one has most likely refilled, and an
    attacker who churns through that many addresses gains nothing the addresses did not
    already give them. IPv6 clients count by /64, the block one host usually holds.
    """

    def __init__(
        self,
        clock: Clock,
        burst: int = BURST,
        refill_s: float = REFILL_S,
        limit: int = MAX_CLIENTS,
    ) -> None:
        self._clock = clock
        self._burst = burst
        self._refill_s = refill_s
        self._limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or None when it may now."""
        tokens = self._tokens(client, self._clock())
        return None if tokens >= 1 else math.ceil((1 - tokens) * self._refill_s)

    def failed(self, client: str) -> None:
        now = self._clock()
        self._buckets[client] = (max(self._tokens(client, now) - 1, 0.0), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self._limit:
            self._buckets.popitem(last=False)

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self._burst, now))
        return min(self._burst, tokens + (now - at) / self._refill_s)


def client_key(scope: Scope) -> str:
    """The address failures count against: the ASGI client (uvicorn has already put the
    X-Forwarded-For of a trusted proxy there), IPv6 by its /64."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthMiddleware:
    """Pure ASGI middleware (no response buffering, so streaming responses stay streaming).

    Serves /login (GET: the form; POST: the sign-in) and /logout (GET: a sign-out button;
    POST: the sign-out) itself. Signing out takes a POST so that a link prefetcher or preview
    cannot sign anyone out; SameSite=Strict already keeps other sites from doing it.
    """

    def __init__(self, app: ASGIApp, web: WebConfig, clock: Clock) -> None:
        self.app = app
        self.web = web
        self.sessions = Sessions(web.session_timeout, clock)
        self.limiter = FailureLimiter(clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.web.requires_auth:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        response: Response | None
        if path == "/login":
            response = await self._login(scope, receive)
        elif path == "/logout":
            response = self._logout(scope)
        elif is_public(path) or (response := self._check(scope)) is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    def _check(self, scope: Scope) -> Response | None:
        """None when the request may pass, else the answer: a challenge, or 429."""
        headers = Headers(scope=scope)
        if self._signed_in(headers):
            return None
        authorization = headers.get("authorization")
        if authorization is None:
            return self._challenge(scope)
        client = client_key(scope)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            return self._too_many(scope["path"], wait)
        if self._valid(authorization):
            return None
        self.limiter.failed(client)
        return self._challenge(scope)

    def _signed_in(self, headers: Headers) -> bool:
        session = _cookie(headers.get("cookie", ""), COOKIE)
        return session is not None and self.sessions.touch(session)

    def _valid(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
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
        return False

    async def _login(self, scope: Scope, receive: Receive) -> Response:
        headers = Headers(scope=scope)
        if scope["method"] in ("GET", "HEAD"):
            query = parse_qs(scope["query_string"].decode("latin-1"))
            after = _local_path((query.get("next") or [""])[0])
            if "token" in query:
                message = "A token in the address signs nobody in: enter it here."
                return _login_page(message, 400, after)
            if self._signed_in(headers):
                return RedirectResponse(after or "/", status_code=303)
            return _login_page("", 200, after)
        if scope["method"] != "POST":
            return _not_allowed("GET, HEAD, POST")
        client = client_key(scope)
        wait = self.limiter.retry_after(client)
        if wait is not None:
            return self._too_many("/login", wait)
        kind = headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return _login_page("Sign in with this form.", 415, None)
        body = await read_body(scope, receive, MAX_FORM_BYTES)
        if body is None:
            return _login_page("The form is too large.", 413, None)
        form = parse_qs(body.decode("utf-8", errors="replace"))
        token = (form.get("token") or [""])[0]
        after = _local_path((form.get("next") or [""])[0])
        if not self.web.token or not hmac.compare_digest(token.encode(), self.web.token.encode()):
            self.limiter.failed(client)
            return _login_page("Wrong token.", 401, after)
        response = RedirectResponse(after or "/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.sessions.create(),
            path="/",
            secure=_https(scope, headers),
            httponly=True,
            samesite="strict",
        )
        return response

    def _logout(self, scope: Scope) -> Response:
        if scope["method"] in ("GET", "HEAD"):
            return _page("sign out", _LOGOUT_FORM, 200)
        if scope["method"] != "POST":
            return _not_allowed("GET, HEAD, POST")
        headers = Headers(scope=scope)
        session = _cookie(headers.get("cookie", ""), COOKIE)
        if session is not None:
            self.sessions.end(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            COOKIE, path="/", secure=_https(scope, headers), httponly=True, samesite="strict"
        )
        return response

    def _challenge(self, scope: Scope) -> Response:
        path: str = scope["path"]
        if not path.startswith(MACHINE_PREFIXES) and self.web.token:
            if path == "/":
                return RedirectResponse("/login", status_code=303)
            query = scope["query_string"].decode("latin-1")
            after = path + ("?" + query if query else "")
            return RedirectResponse("/login?" + urlencode({"next": after}), status_code=303)
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

    def _too_many(self, path: str, wait: int) -> Response:
        message = f"too many failed sign-ins from this address: try again in {wait} s"
        headers = {"Retry-After": str(wait)}
        if path.startswith(MACHINE_PREFIXES) or not self.web.token:
            return JSONResponse({"detail": message}, status_code=429, headers=headers)
        return _login_page(message[0].upper() + message[1:] + ".", 429, None, headers)


def _login_page(
    error: str, status: int, after: str | None, headers: dict[str, str] | None = None
) -> Response:
    hidden = f'<input type="hidden" name="next" value="{html.escape(after)}">' if after else ""
    error_html = f"<p>{html.escape(error)}</p>" if error else ""
    return _page("sign in", _LOGIN_FORM.format(next=hidden, error=error_html), status, headers)


def _page(title: str, body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(
        _PAGE.format(title=title, body=body),
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _not_allowed(allow: str) -> Response:
    return JSONResponse({"detail": "method not allowed"}, status_code=405, headers={"Allow": allow})


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes (read no further)."""
    declared = Headers(scope=scope).get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if message["type"] != "http.request" or not message.get("more_body"):
            return bytes(body)


def _local_path(value: str) -> str | None:
    """``value`` when it is a path on this server (where to go after signing in), else None:
    never another origin (``//host``, ``/\\host``), so /login is no open redirect."""
    if (
        value.startswith("/")
        and not value.startswith(("//", "/\\"))
        and len(value) <= _MAX_NEXT
        and value.isprintable()
    ):
        return value
    return None


def _https(scope: Scope, headers: Headers) -> bool:
    forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return scope.get("scheme") == "https" or forwarded == "https"


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode()).digest()


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
