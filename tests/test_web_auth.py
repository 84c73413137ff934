"""Signing in to the dashboard: the login form, sessions, sign-out, guessing limits and the
security headers, over a real loopback socket with a clock the test moves."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from llmpulse.config import Config, ConfigError, parse_config
from llmpulse.web.app import create_app
from llmpulse.web.auth import BURST, COOKIE, REFILL_S, FailureLimiter, Sessions, client_key
from llmpulse.web.server import bind
from llmpulse.web.view import View
from webserve import GROQ, make_config, seed

TOKEN = "t0ken-for-tests"
PASSWORD = "pa55word"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ServedApp:
    """``create_app`` with the test's clock, served by uvicorn on a loopback socket from a
    thread (uvicorn's defaults, as ``WebServer`` uses them: a proxy on loopback is trusted
    with X-Forwarded-For and X-Forwarded-Proto, which lets a test speak as other clients)."""

    def __init__(
        self, config: Config, db: Path, clock: Clock | None = None, status_only: bool = False
    ) -> None:
        self.clock = clock or Clock()
        self.view = View.open(config, db)
        app = create_app(self.view, config.web, status_only=status_only, clock=self.clock)
        self._sock = bind("127.0.0.1", 0, "test")
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="critical", lifespan="off", ws="none")
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])), daemon=True
        )

    def __enter__(self) -> ServedApp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        self.view.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "r.db"
    seed(path, time.time())
    return path


def guarded_config(**web: Any) -> Config:
    return make_config(
        {"token": "${WEB_TOKEN}", "username": "sre", "password": "${WEB_PASSWORD}", **web},
        {"WEB_TOKEN": TOKEN, "WEB_PASSWORD": PASSWORD},
    )


@pytest.fixture
def site(db: Path) -> Iterator[ServedApp]:
    with ServedApp(guarded_config(session_timeout="1h"), db) as served:
        yield served


def client(site: ServedApp, address: str | None = None) -> httpx.Client:
    """A client that follows no redirect and keeps no cookies; ``address`` is the client
    address the server sees (through X-Forwarded-For from loopback)."""
    headers = {"X-Forwarded-For": address} if address else {}
    no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(base_url=site.url, timeout=10, headers=headers, cookies=no_cookies)


def sign_in(http: httpx.Client, token: str = TOKEN, **extra: str) -> httpx.Response:
    # httpx sends a dict as application/x-www-form-urlencoded, as a browser sends the form.
    return http.post("/login", data={"token": token, **extra})


def session_cookie(response: httpx.Response) -> Any:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return jar[COOKIE]


def with_session(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


# --- signing in ---------------------------------------------------------------------------


def test_the_login_form_posts_and_sets_a_random_session_cookie(site: ServedApp) -> None:
    with client(site) as http:
        page = http.get("/login")
        assert page.status_code == 200
        assert '<form method="post" action="/login">' in page.text
        assert page.headers["cache-control"] == "no-store"
        wrong = sign_in(http, "wrong")
        assert wrong.status_code == 401 and "Wrong token." in wrong.text
        assert "set-cookie" not in wrong.headers
        signed_in = sign_in(http)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        cookie = session_cookie(signed_in)
        assert cookie["httponly"] and cookie["samesite"] == "strict" and cookie["path"] == "/"
        assert not cookie["secure"] and not cookie["max-age"]  # plain http; ends with the browser
        session = cookie.value
        assert http.get("/api/v1/overview", headers=with_session(session)).status_code == 200
        assert http.get("/", headers=with_session(session)).status_code == 200
        # Signed in already: the login page sends the browser on.
        again = http.get("/login", headers=with_session(session))
        assert again.status_code == 303 and again.headers["location"] == "/"
        # Nothing in the cookie derives from the token: not the token, not a digest of it
        # (the old cookie was sha256 of the credentials), not the same on a second sign-in.
        assert TOKEN not in session and len(session) >= 43
        for secret in (TOKEN, f"{TOKEN}\0sre\0{PASSWORD}"):
            for salt in (b"", b"llmpulse-session\0"):
                assert session != hashlib.sha256(salt + secret.encode()).hexdigest()
        assert session_cookie(sign_in(http)).value != session


def test_two_installations_give_different_cookies_for_the_same_token(db: Path) -> None:
    sessions = []
    for _ in range(2):
        with ServedApp(guarded_config(), db) as other, client(other) as http:
            sessions.append(session_cookie(sign_in(http)).value)
            assert http.get("/api/v1/overview", headers=with_session(sessions[-1])).is_success
    assert sessions[0] != sessions[1]
    # A session is known only to the process that made it.
    with ServedApp(guarded_config(), db) as third, client(third) as http:
        assert http.get("/api/v1/overview", headers=with_session(sessions[0])).status_code == 401


def test_a_token_in_the_query_string_signs_nobody_in(site: ServedApp) -> None:
    with client(site) as http:
        page = http.get("/login", params={"token": TOKEN})
        assert page.status_code == 400 and "set-cookie" not in page.headers
        assert "signs nobody in" in page.text
        # Posted, but in the URL rather than the form: still not signed in.
        posted = http.post("/login", params={"token": TOKEN}, data={"next": "/"})
        assert posted.status_code == 401 and "set-cookie" not in posted.headers
        # Anything but the form is refused.
        as_json = http.post("/login", json={"token": TOKEN})
        assert as_json.status_code == 415 and "set-cookie" not in as_json.headers
        huge = sign_in(http, TOKEN, padding="x" * 5000)
        assert huge.status_code == 413 and "set-cookie" not in huge.headers
        assert http.put("/login").status_code == 405


def test_signing_in_returns_to_the_page_asked_for_and_nowhere_else(site: ServedApp) -> None:
    with client(site) as http:
        asked = http.get("/alerts", params={"x": "1"})
        assert asked.status_code == 303
        assert asked.headers["location"] == "/login?next=%2Falerts%3Fx%3D1"
        page = http.get(asked.headers["location"])
        assert '<input type="hidden" name="next" value="/alerts?x=1">' in page.text
        assert sign_in(http, next="/alerts?x=1").headers["location"] == "/alerts?x=1"
        for elsewhere in ("//evil.example/", "/\\evil.example", "https://evil.example/"):
            assert sign_in(http, next=elsewhere).headers["location"] == "/", elsewhere


# --- sessions -----------------------------------------------------------------------------


def test_a_session_slides_and_expires_after_the_idle_timeout(site: ServedApp) -> None:
    with client(site) as http:
        session = with_session(session_cookie(sign_in(http)).value)
        for _ in range(3):  # 150 minutes in all, never 60 idle
            site.clock.now += 50 * 60
            assert http.get("/api/v1/overview", headers=session).status_code == 200
        site.clock.now += 60 * 60
        assert http.get("/api/v1/overview", headers=session).status_code == 401
        assert http.get("/", headers=session).headers["location"] == "/login"
        # Expired is gone: it does not come back.
        site.clock.now -= 30 * 60
        assert http.get("/api/v1/overview", headers=session).status_code == 401


def test_logout_ends_the_session(site: ServedApp) -> None:
    with client(site) as http:
        session = with_session(session_cookie(sign_in(http)).value)
        # GET shows a sign-out button and changes nothing (prefetchers follow links).
        page = http.get("/logout", headers=session)
        assert page.status_code == 200 and '<form method="post" action="/logout">' in page.text
        assert http.get("/api/v1/overview", headers=session).status_code == 200
        out = http.post("/logout", headers=session)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        cleared = session_cookie(out)
        assert cleared.value == "" and cleared["max-age"] == "0"
        assert http.get("/api/v1/overview", headers=session).status_code == 401
        # Signing out without a session is harmless.
        assert http.post("/logout").status_code == 303


def test_the_cookie_is_secure_over_https(site: ServedApp) -> None:
    with client(site) as http:
        proxied = http.post("/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
        cookie = session_cookie(proxied)
        assert cookie["secure"]
        out = http.post(
            "/logout", headers={**with_session(cookie.value), "X-Forwarded-Proto": "https"}
        )
        assert session_cookie(out)["secure"]
        assert not session_cookie(sign_in(http))["secure"]


def test_sessions_are_bounded_and_expire_oldest_first() -> None:
    clock = Clock()
    sessions = Sessions(timeout=60, clock=clock, limit=3)
    first, second, third = sessions.create(), sessions.create(), sessions.create()
    assert sessions.touch(first)  # now the most recently used
    fourth = sessions.create()
    assert len(sessions) == 3 and not sessions.touch(second)
    assert sessions.touch(first) and sessions.touch(third) and sessions.touch(fourth)
    clock.now += 61
    sessions.create()
    assert len(sessions) == 1  # the expired went with the next sign-in
    sessions.end(fourth)
    assert not sessions.touch(fourth)


# --- guessing -----------------------------------------------------------------------------


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("kind", "guess", "right"),
    [
        ("form", lambda http: sign_in(http, "wrong"), lambda http: sign_in(http)),
        (
            "bearer",
            lambda http: http.get("/api/v1/overview", headers={"Authorization": "Bearer nope"}),
            lambda http: http.get("/api/v1/overview", headers=BEARER),
        ),
        (
            "basic",
            lambda http: http.get("/openapi.json", headers=basic("sre", "wrong")),
            lambda http: http.get("/openapi.json", headers=basic("sre", PASSWORD)),
        ),
    ],
)
def test_failed_attempts_are_limited_per_client(
    site: ServedApp, kind: str, guess: Any, right: Any
) -> None:
    with client(site) as signed_in:
        session = with_session(session_cookie(sign_in(signed_in)).value)
    with client(site, "203.0.113.7") as attacker, client(site, "198.51.100.2") as other:
        answers = [guess(attacker).status_code for _ in range(3 * BURST)]
        assert answers == [401] * BURST + [429] * (2 * BURST), kind
        refused = guess(attacker)
        wait = int(refused.headers["retry-after"])
        assert 0 < wait <= REFILL_S
        if kind == "form":
            assert "Too many failed sign-ins" in refused.text
            assert refused.headers["content-type"].startswith("text/html")
        else:
            assert "too many failed sign-ins" in refused.json()["detail"]
        # A right credential from the same address is refused too: else the answers would
        # still tell a right guess from a wrong one.
        assert right(attacker).status_code == 429
        # Others are not affected, nor a session the limited address already has.
        assert right(other).status_code in (200, 303)
        assert attacker.get("/api/v1/overview", headers=session).status_code == 200
        # One more try per refill.
        site.clock.now += REFILL_S
        assert guess(attacker).status_code == 401
        assert guess(attacker).status_code == 429
        site.clock.now += REFILL_S
        assert right(attacker).status_code in (200, 303)


def test_the_limiter_remembers_a_bounded_number_of_clients() -> None:
    clock = Clock()
    limiter = FailureLimiter(clock, burst=2, refill_s=10, limit=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is None  # one of two spent
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 10
    clock.now += 4
    assert limiter.retry_after("192.0.2.1") == 6


def test_clients_count_by_address_and_ipv6_by_its_64() -> None:
    def key(host: str | None) -> str:
        return client_key({"client": (host, 1234) if host else None})

    assert key("2001:db8:1:2:aaaa::1") == key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:192.0.2.1") == key("192.0.2.1") == "192.0.2.1"
    assert key(None) == ""


# --- headers ------------------------------------------------------------------------------


SECURITY = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "same-origin",
}


def assert_secured(response: httpx.Response, what: str) -> None:
    for name, value in SECURITY.items():
        assert value in response.headers.get(name, ""), (what, response.status_code, name)


def test_every_response_carries_the_security_headers(site: ServedApp, db: Path) -> None:
    with client(site) as http, client(site, "192.0.2.99") as guesser:
        for _ in range(BURST):
            guesser.get("/openapi.json", headers={"Authorization": "Bearer nope"})
        kinds = {
            "login page": (http.get("/login"), 200),
            "wrong token": (sign_in(http, "wrong"), 401),
            "signed in": (sign_in(http), 303),
            "query token": (http.get("/login", params={"token": TOKEN}), 400),
            "challenge": (http.get("/api/v1/overview"), 401),
            "redirect to login": (http.get("/cost"), 303),
            "too many": (guesser.get("/openapi.json", headers=BEARER), 429),
            "too many, form": (sign_in(guesser), 429),
            "logout page": (http.get("/logout"), 200),
            "logout": (http.post("/logout"), 303),
            "not found": (http.get("/api/v1/nothing-here", headers=BEARER), 404),
            "invalid": (http.get("/api/v1/results", params={"limit": "x"}, headers=BEARER), 422),
            "api": (http.get("/api/v1/overview", headers=BEARER), 200),
            "page": (http.get("/", headers=BEARER), 200),
            "static": (http.get("/static/app.css"), 200),
            "static missing": (http.get("/static/nothing.css"), 404),
            "public": (http.get(f"/badge/{GROQ}.svg"), 200),
            "health": (http.get("/healthz"), 200),
        }
        for what, (response, status) in kinds.items():
            assert response.status_code == status, (what, response.status_code)
            assert_secured(response, what)
        site.view.store.close()  # the next query fails inside the app
        failed = http.get("/api/v1/overview", headers=BEARER)
        assert failed.status_code == 500 and failed.json() == {"detail": "internal error"}
        assert_secured(failed, "internal error")
    with ServedApp(make_config(), db, status_only=True) as public, client(public) as http:
        for path, status in (("/", 200), ("/api/v1/statuspage", 200), ("/api/v1/overview", 404),
                             ("/static/status.js", 200), ("/login", 404)):  # fmt: skip
            response = http.get(path)
            assert response.status_code == status, path
            assert_secured(response, f"status-only {path}")


# --- configuration ------------------------------------------------------------------------


def test_session_timeout_is_a_positive_finite_duration() -> None:
    targets = [{"provider": "ollama", "model": "m"}]
    assert parse_config({"targets": targets}, env={}).web.session_timeout == 12 * 3600
    web = parse_config({"targets": targets, "web": {"session_timeout": "30m"}}, env={}).web
    assert web.session_timeout == 1800
    for bad in ("0s", "inf", "-5m", "soon", "400d"):
        with pytest.raises(ConfigError, match=r"^web\.session_timeout: ") as caught:
            parse_config({"targets": targets, "web": {"session_timeout": bad}}, env={})
        assert "\n" not in str(caught.value), bad
