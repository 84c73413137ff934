"""Google Cloud Vertex AI: Gemini's wire format at Vertex's URLs, its errors, its OAuth2 tokens.

Gemini on Vertex (``projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
and ``:streamGenerateContent?alt=sse``) answers in the Gemini API's format, each SSE event a
whole GenerateContentResponse framed ``data: ...\\r\\n\\r\\n``. Its errors are google.rpc.Status
with Vertex's own messages: a quota error names Vertex's 429 page and carries no QuotaFailure,
a request without a valid OAuth2 access token is ``401 UNAUTHENTICATED``. Claude on Vertex is
``sim.vertex_anthropic``.

The token endpoint plays Google's OAuth2 server for service accounts: a JWT-bearer grant
(RFC 7523) whose assertion is signed by a key of ``scenario.google_auth.service_accounts``
(verified with google-auth's own ``jwt.decode``) gets an access token living
``token_lifetime``; the Vertex endpoints refuse any other token.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import google.auth.exceptions
from google.auth import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from llmpulse.sim import gemini
from llmpulse.sim.common import Limit, Plan, retry_seconds
from llmpulse.sim.gemini import MALFORMED, STREAM_CONTENT_TYPE, Stream, completion, max_tokens
from llmpulse.sim.scenario import GoogleAuth, ModelBehavior

__all__ = [
    "MALFORMED",
    "STREAM_CONTENT_TYPE",
    "Stream",
    "TokenIssuer",
    "VertexApi",
    "completion",
    "error",
    "headers",
    "max_tokens",
    "retry_headers",
    "validate",
]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience of a service account's grant: Google's token endpoint, whatever ``token_uri`` the
# request is sent to (google-auth's service_account module signs it so).
AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_TOKENS_KEPT = 10000  # live tokens remembered; the oldest are forgotten first
MAX_FORM_BYTES = 64 * 1024

_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_MISSING = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_EXHAUSTED = (
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
)
# Token verdicts (``TokenIssuer.check``) -> the ErrorInfo reason and message Google sends.
_AUTH: dict[str, tuple[str, str]] = {
    "auth": ("ACCESS_TOKEN_TYPE_UNSUPPORTED", _UNAUTHENTICATED),
    "401": ("ACCESS_TOKEN_TYPE_UNSUPPORTED", _UNAUTHENTICATED),
    "auth_expired": ("ACCESS_TOKEN_EXPIRED", _UNAUTHENTICATED),
    "auth_missing": ("CREDENTIALS_MISSING", _MISSING),
}
# Errors Vertex answers itself, for every publisher's models.
GOOGLE_KINDS = frozenset({*_AUTH, "403", "404", "not_found", "429", "insufficient_quota"})


def google_error(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": {"code": status, "message": message, "status": gemini.STATUS[status]}
    }
    if details:
        body["error"]["details"] = details
    return body


def vertex_error(kind: str, publisher: str, p: Plan, message: str | None) -> tuple[int, Any]:
    """One of the errors of ``GOOGLE_KINDS``, for a model of ``publisher``."""
    if kind in _AUTH:
        reason, text = _AUTH[kind]
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": "aiplatform.googleapis.com"},
        }
        return 401, google_error(401, message or text, [info])
    if kind == "403":
        text = "Permission 'aiplatform.endpoints.predict' denied on resource (or it may not exist)."
        return 403, google_error(403, message or text)
    if kind in ("404", "not_found"):
        text = (
            f"Publisher Model `publishers/{publisher}/models/{p.model}` was not found or your "
            "project does not have access to it."
        )
        return 404, google_error(404, message or text)
    details = []
    retry = p.behavior.retry_after
    if retry is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": retry_seconds(retry) + "s",
            }
        )
    return 429, google_error(429, message or _EXHAUSTED, details)


# ---- Gemini on Vertex: the protocol module the server's PROTOCOLS["vertex"] names ----------


def validate(body: dict[str, Any]) -> str | None:
    return gemini.validate(body)


def headers(p: Plan, limits: list[Limit]) -> dict[str, str]:
    return gemini.headers(p, limits)


def retry_headers(seconds: float) -> dict[str, str]:
    return {}  # the delay rides in a google.rpc.RetryInfo detail


def error(kind: str, p: Plan, message: str | None = None) -> tuple[int, Any]:
    if kind in GOOGLE_KINDS:
        return vertex_error(kind, "google", p, message)
    status, body = gemini.error(kind, p, message)
    if status in (502, 503, 529):
        body["error"]["message"] = message or "The service is currently unavailable."
    return status, body


# ---- OAuth2 ---------------------------------------------------------------------------


class TokenIssuer:
    """Access tokens issued for service accounts' signed grants, and their expiry."""

    def __init__(self, settings: Callable[[], GoogleAuth]) -> None:
        self._settings = settings
        self._live: OrderedDict[str, float] = OrderedDict()  # token -> monotonic expiry
        self.issued = 0  # ground truth for tests: how many tokens were handed out

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """Google's token endpoint: (status, JSON body) for a form-encoded grant request."""
        grant_type = (form.get("grant_type") or [""])[0]
        if grant_type != JWT_BEARER:
            return 400, _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        assertion = (form.get("assertion") or [""])[0]
        settings = self._settings()
        try:
            unverified = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
        except (ValueError, google.auth.exceptions.GoogleAuthError):
            return 400, _oauth_error("invalid_grant", "Invalid JWT: malformed assertion.")
        key = settings.service_accounts.get(str(unverified.get("iss")))
        if key is None:
            return 400, _oauth_error("invalid_grant", "Invalid grant: account not found")
        try:
            claims = jwt.decode(  # type: ignore[no-untyped-call]
                assertion, certs=key, audience=AUDIENCE, clock_skew_in_seconds=10
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError):
            return 400, _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if SCOPE not in str(claims.get("scope", "")).split():
            return 400, _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience.")
        token = "ya29.sim-" + secrets.token_urlsafe(32)
        now = time.monotonic()
        self._forget(now)
        self._live[token] = now + settings.token_lifetime
        self.issued += 1
        lifetime = max(1, round(settings.token_lifetime))
        return 200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}

    def check(self, authorization: str | None) -> str | None:
        """None for a live token, else the verdict: auth_missing, auth_expired or auth."""
        if not authorization or authorization[:7].lower() != "bearer ":
            return "auth_missing"
        expiry = self._live.get(authorization[7:].strip())
        if expiry is None:
            return "auth"
        return "auth_expired" if time.monotonic() >= expiry else None

    def _forget(self, now: float) -> None:
        for token in [t for t, expiry in self._live.items() if expiry <= now]:
            del self._live[token]
        while len(self._live) >= MAX_TOKENS_KEPT:
            self._live.popitem(last=False)


def _oauth_error(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description}


# ---- routes -----------------------------------------------------------------------------

Handle = Callable[..., Awaitable[ASGIApp]]  # the server's handle(): a SimResponse
_METHODS = {
    "google": ("vertex", "generateContent", "streamGenerateContent"),
    "anthropic": ("vertex-anthropic", "rawPredict", "streamRawPredict"),
}


class VertexApi:
    """Vertex's endpoints: the models' methods (through the server's ``handle``), the
    publisher models, and the token endpoint."""

    def __init__(
        self,
        tokens: TokenIssuer,
        handle: Handle,
        effective: Callable[[str], ModelBehavior | None],
    ) -> None:
        self.tokens, self._handle, self._effective = tokens, handle, effective

    async def token(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            return JSONResponse(_oauth_error("invalid_request", "request too large"), 400)
        form = parse_qs(raw.decode("utf-8", errors="replace"))
        status, body = self.tokens.grant(form)
        return JSONResponse(body, status, headers={"cache-control": "no-store"})

    async def call(self, request: Request) -> ASGIApp:
        t0 = time.monotonic()
        publisher = request.path_params["publisher"]
        model, _, method = request.path_params["rest"].rpartition(":")
        protocol, whole, streamed = _METHODS.get(publisher, ("", "", ""))
        if not protocol or method not in (whole, streamed):
            text = f"Method {method or '(none)'} of publisher {publisher} is not found."
            return JSONResponse(google_error(404, text), 404)
        stream = method == streamed
        if stream and protocol == "vertex" and request.query_params.get("alt") != "sse":
            # Without alt=sse Vertex streams one JSON array; llmpulse asks for SSE only.
            text = "The simulator streams generateContent with ?alt=sse only."
            return JSONResponse(google_error(400, text), 400)
        try:
            body = await request.json()
        except ValueError:
            body = None
        verdict = self.tokens.check(request.headers.get("authorization"))
        credentials = request.headers.get("authorization", "")
        return await self._handle(
            protocol,
            model,
            "vertex-token",
            stream,
            t0,
            body,
            verdict,
            credentials=f"authorization: {credentials}" if credentials else "",
            authorized=True,
        )

    async def publisher_model(self, request: Request) -> Response:
        """publishers.models.get: the model's resource, or 404 when it is not served."""
        publisher, model = request.path_params["publisher"], request.path_params["model"]
        verdict = self.tokens.check(request.headers.get("authorization"))
        plan = _bare_plan(model)
        if verdict is not None:
            status, body = vertex_error(verdict, publisher, plan, None)
            return JSONResponse(body, status)
        behavior = self._effective(model)
        if behavior is None or not behavior.listed or publisher not in _METHODS:
            status, body = vertex_error("not_found", publisher, plan, None)
            return JSONResponse(body, status)
        resource = {
            "name": f"publishers/{publisher}/models/{model}",
            "versionId": "001",
            "openSourceCategory": "PROPRIETARY",
            "launchStage": "GA",
        }
        return JSONResponse(resource)


def _bare_plan(model: str) -> Plan:
    """A plan for an error that comes before any request is planned."""
    b = ModelBehavior()
    return Plan(
        protocol="vertex",
        model=model,
        served_model=model,
        request_id="",
        stream=False,
        t0=0.0,
        created=0,
        ttft=0.0,
        latency=0.0,
        tokens_per_s=b.tokens_per_s,
        text_tokens=0,
        reasoning_tokens=0,
        input_tokens=0,
        cached_tokens=0,
        finish="stop",
        behavior=b,
    )
