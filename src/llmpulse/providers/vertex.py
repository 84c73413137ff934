"""Google Cloud Vertex AI: Gemini (``vertex``) and Anthropic's Claude (``vertex-anthropic``).

Reference: the Vertex AI REST reference (``projects.locations.publishers.models``:
``generateContent``, ``streamGenerateContent?alt=sse``, ``rawPredict``, ``streamRawPredict``;
``publishers.models.get``) and anthropic-sdk-python's ``lib/vertex`` (the Messages body without
``model``, with ``anthropic_version: vertex-2023-10-16``; ``stream`` stays in the body).
Gemini's bodies, stream events and google.rpc.Status errors are the Gemini API's; Claude's are
Anthropic's, except the errors Vertex answers itself (authentication, quota, unknown model),
which are Google's.

Requests carry an OAuth2 access token (``Authorization: Bearer``) from google-auth: a
credentials file (``credentials_file``: a service account's, an ``authorized_user`` one of
``gcloud auth application-default login``, or ``external_account`` workload identity, as LiteLLM
takes them), the same JSON given inline (``credentials_info``, LiteLLM's
``vertex_credentials``), or application default credentials, refreshed when
google-auth deems it expired (a few minutes before it is). google-auth and requests are imported
when a token is first needed: ``llmpulse check`` of other providers does not pay for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llmpulse.errors import ErrorClass
from llmpulse.providers.anthropic import AnthropicProtocol
from llmpulse.providers.anthropic import error_from_object as anthropic_error
from llmpulse.providers.base import (
    CredentialsError,
    ModelsInfo,
    Protocol,
    ProtocolError,
    ProviderError,
    RequestSpec,
)
from llmpulse.providers.gemini import GeminiProtocol
from llmpulse.providers.gemini import error_from_object as google_error
from llmpulse.secrets import Redactor

if TYPE_CHECKING:
    import requests
    from google.auth.credentials import Credentials

    from llmpulse.target import Target

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ANTHROPIC_VERSION = "vertex-2023-10-16"
TOKEN_TIMEOUT_S = 10.0  # a token endpoint that does not answer must not hold a probe slot
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024  # Google's answers are under 4 KiB
MAX_CREDENTIALS_BYTES = 1024 * 1024  # a key file is about 2 KiB
MAX_TOKEN_CHARS = 8192  # Google's access tokens are up to 2 KiB; RFC 6750 sets no bound
# RFC 6750's b64token: what may follow "Bearer " in a header (no CR/LF, no spaces).
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_REASON_CHARS = 200
_OVERSIZED = "an answer over"  # our transport's failures, told apart by _failure_class
_LATE = "no whole answer within"


def model_url(target: Target, model: str, method: str) -> str:
    """The URL of ``method`` on ``model`` in the target's project and location (or at the
    target's ``model_endpoint``, LiteLLM's ``{api_base}:{method}``)."""
    if target.model_endpoint is not None:
        return f"{target.model_endpoint}:{method}"
    publisher = "anthropic" if model.startswith("claude-") else "google"
    return (
        f"{target.base_url}/projects/{target.project}/locations/{target.location}"
        f"/publishers/{publisher}/models/{quote(model, safe='-._@')}:{method}"
    )


def anthropic_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages body as Vertex takes it: the model is in the URL, the version in the body."""
    out = {k: v for k, v in body.items() if k != "model"}
    out["anthropic_version"] = ANTHROPIC_VERSION
    return out


def _publisher_model(target: Target, publisher: str) -> RequestSpec:
    # publishers.models.get names the model without a version (claude-haiku-4-5@20251001).
    model = quote(target.model.split("@", 1)[0], safe="-._")
    url = f"{target.base_url}/publishers/{publisher}/models/{model}"
    return RequestSpec("GET", url, {**target.headers})


def _parse_publisher_model(body: Any, publisher: str, model: str) -> ModelsInfo:
    """A PublisherModel resource: found is listed (Vertex has no context window in it)."""
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str):
        raise ProtocolError("publisher model response has no 'name'")
    wanted = f"publishers/{publisher}/models/{model.split('@', 1)[0]}"
    return ModelsInfo(listed=name == wanted, count=1)


def _headers(target: Target) -> dict[str, str]:
    return {"content-type": "application/json", **target.headers}


class _OnVertex(Protocol):
    """What Vertex AI's two protocols share, whoever publishes the model: a bearer token
    instead of a key, and the publisher-model lookup as the models check."""

    publisher: str

    def headers(self, target: Target) -> dict[str, str]:
        return _headers(target)

    def models_request(self, target: Target) -> RequestSpec:
        return _publisher_model(target, self.publisher)

    def parse_models(self, body: Any, model: str) -> ModelsInfo:
        return _parse_publisher_model(body, self.publisher, model)

    async def sign(
        self, target: Target, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        return await _bearer(target, headers)


class VertexGeminiProtocol(_OnVertex, GeminiProtocol):
    name = "vertex"
    publisher = "google"

    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        spec = super().completion_request(
            target, messages=messages, params=params, max_tokens=max_tokens, stream=stream
        )
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = model_url(target, target.model, method)
        return RequestSpec("POST", url, _headers(target), spec.json)


class VertexAnthropicProtocol(_OnVertex, AnthropicProtocol):
    name = "vertex-anthropic"
    publisher = "anthropic"
    request_id_headers = ("request-id", "x-request-id")

    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        spec = super().completion_request(
            target, messages=messages, params=params, max_tokens=max_tokens, stream=stream
        )
        assert spec.json is not None
        method = "streamRawPredict" if stream else "rawPredict"
        url = model_url(target, target.model, method)
        return RequestSpec("POST", url, _headers(target), anthropic_body(spec.json))

    def error_from_object(self, obj: dict[str, Any], status: int | None) -> ProviderError:
        return error_from_object(obj, status)


def error_from_object(obj: dict[str, Any], status: int | None) -> ProviderError:
    """Claude's errors are Anthropic's (``{"type": "error", "error": {"type": ...}}``) except
    those Vertex answers itself, which are google.rpc.Status (``error.status``/``code``)."""
    err = obj.get("error")
    if isinstance(err, dict) and ("status" in err or isinstance(err.get("code"), int)):
        return google_error(obj, status)
    return anthropic_error(obj, status)


async def _bearer(target: Target, headers: dict[str, str]) -> dict[str, str]:
    token = await token_source(target.credentials_file, target.credentials_info).token()
    return {**headers, "authorization": f"Bearer {token}"}


@functools.cache
def token_source(credentials_file: str | None, credentials_info: str | None = None) -> TokenSource:
    """One source per credentials (a file's path, their JSON, or neither for application
    default credentials), shared by every target using them: one token, one refresh at a
    time."""
    return TokenSource(credentials_file, credentials_info)


@functools.cache
def _refresher() -> concurrent.futures.ThreadPoolExecutor:
    """Token refreshes' own threads: a token endpoint that hangs holds one of these, never one
    of the event loop's default executor, where aiohttp resolves every provider's host."""
    return concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="llmpulse-vertex-token")


class TokenSource:
    """OAuth2 access tokens of one set of Google credentials.

    google-auth's refresh is blocking (``requests``), so it runs in a thread of its own. One
    refresh runs at a time: callers that need a token while it runs await its outcome (a
    ``concurrent.futures.Future``, as probes and the gateway may run on different event loops)
    instead of each queueing a refresh of their own.
    """

    def __init__(self, credentials_file: str | None, credentials_info: str | None = None) -> None:
        self.credentials_file = credentials_file
        self._info = credentials_info
        self._secrets = Redactor()  # the secrets of the credentials last read
        self._lock = threading.Lock()  # guards _pending
        self._pending: concurrent.futures.Future[str] | None = None
        self._credentials: Credentials | None = None
        self._session: requests.Session | None = None

    @property
    def described(self) -> str:
        """What the credentials are, for errors: the file's path, never its content."""
        if self._info is not None:
            return "Vertex AI credentials given as JSON (vertex_credentials)"
        if self.credentials_file is None:
            return "Vertex AI application default credentials"
        return f"Vertex AI credentials file {self.credentials_file}"

    async def token(self) -> str:
        creds = self._credentials
        if creds is not None and creds.valid:
            return str(creds.token)
        with self._lock:
            pending = self._pending
            if pending is None:
                pending = self._pending = _refresher().submit(self._refresh)
        # Shielded: one caller giving up (its timeout) must not cancel the others' refresh.
        # (shield marks the outcome seen when the caller gave up: it is not logged as lost.)
        return await asyncio.shield(asyncio.wrap_future(pending))

    def _refresh(self) -> str:
        try:
            return self._fetch()
        finally:
            with self._lock:
                self._pending = None

    def _fetch(self) -> str:
        creds = self._credentials
        if creds is not None and creds.valid:  # refreshed just before this one was asked
            return str(creds.token)
        loading = creds is None
        try:
            if creds is None:
                creds = self._load()
                self._credentials = creds
            loading = False
            creds.refresh(self._request())  # type: ignore[no-untyped-call]
        except Exception as exc:
            # google-auth parses the file and the token endpoint's answer with bare indexing
            # and arithmetic: garbage in either raises TypeError, KeyError, AttributeError,
            # OverflowError... besides its own errors.
            self._credentials = None
            why = f"{self.described}: {_reason(exc, self._secrets)}"
            raise CredentialsError(why, _failure_class(exc, loading)) from None
        token = creds.token
        if not isinstance(token, str) or not token:
            self._credentials = None
            raise CredentialsError(
                f"{self.described}: the token endpoint gave no token", ErrorClass.PROTOCOL
            )
        if len(token) > MAX_TOKEN_CHARS or not _BEARER_TOKEN.fullmatch(token):
            self._credentials = None  # never kept, nor sent in a header
            raise CredentialsError(
                f"{self.described}: the token endpoint gave no usable access token "
                f"(expected up to {MAX_TOKEN_CHARS} characters of an OAuth2 bearer token)",
                ErrorClass.PROTOCOL,
            )
        return token

    def _load(self) -> Credentials:
        import google.auth

        if self._info is not None:
            return self._parsed(json.loads(self._info))
        if self.credentials_file is None:
            found, _project = google.auth.default(scopes=[SCOPE])
            return found
        with open(self.credentials_file, "rb") as file:
            raw = file.read(MAX_CREDENTIALS_BYTES + 1)
        if len(raw) > MAX_CREDENTIALS_BYTES:
            raise ValueError(f"over {MAX_CREDENTIALS_BYTES} bytes: not a credentials file")
        return self._parsed(json.loads(raw))

    def _parsed(self, info: Any) -> Credentials:
        # google-auth's errors may quote a value it could not use (a private key given as a
        # list is repr'd whole): its reasons pass a redactor of the credentials' secrets.
        self._secrets = Redactor(_secret_values(info))
        return _from_info(info)

    def _request(self) -> Any:
        """google-auth's transport, bounded in time and size (google-auth's own waits two
        minutes per read and reads any answer whole)."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        return _bounded_request(self._session)


def _bounded_request(session: requests.Session) -> Any:
    """A ``google.auth.transport.Request`` whose answers end within ``TOKEN_TIMEOUT_S`` (give
    or take one read) and ``MAX_TOKEN_RESPONSE_BYTES``; hand-written because neither
    google-auth's transports nor requests bound a whole response."""
    import requests
    from google.auth import exceptions, transport

    def failed(why: str) -> Exception:
        return exceptions.TransportError(why)  # type: ignore[no-untyped-call]

    class Response(transport.Response):
        def __init__(self, status: int, headers: Any, data: bytes) -> None:
            self._status, self._headers, self._data = status, headers, data

        @property
        def status(self) -> int:
            return self._status

        @property
        def headers(self) -> Any:
            return self._headers

        @property
        def data(self) -> bytes:
            return self._data

    class Request(transport.Request):
        def __call__(
            self,
            url: str,
            method: str = "GET",
            body: Any = None,
            headers: Any = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> Response:
            deadline = time.monotonic() + TOKEN_TIMEOUT_S
            data = bytearray()
            try:
                with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=TOKEN_TIMEOUT_S,
                    stream=True,
                    allow_redirects=False,
                ) as response:
                    for chunk in response.iter_content(8192):
                        data += chunk
                        if len(data) > MAX_TOKEN_RESPONSE_BYTES:
                            raise failed(f"{_OVERSIZED} {MAX_TOKEN_RESPONSE_BYTES} bytes")
                        if time.monotonic() > deadline:
                            raise failed(f"{_LATE} {TOKEN_TIMEOUT_S:g}s")
            except requests.RequestException as exc:
                raise failed(type(exc).__name__) from None
            return Response(response.status_code, response.headers, bytes(data))

    return Request()


def _from_info(info: Any) -> Credentials:
    """Credentials of the JSON types LiteLLM's ``vertex_credentials`` takes, each through its
    own loader (google-auth's generic ones are deprecated: they load any type at all)."""
    from google.oauth2 import credentials as user
    from google.oauth2 import service_account

    if not isinstance(info, dict):
        raise ValueError("expected a JSON object")
    kind = info.get("type")
    creds: Credentials
    if kind == "service_account":
        creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    elif kind == "authorized_user":  # gcloud auth application-default login
        creds = user.Credentials.from_authorized_user_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    elif kind == "external_account":  # workload identity federation
        from google.auth import aws, identity_pool

        source = info.get("credential_source")
        on_aws = isinstance(source, dict) and "aws" in str(source.get("environment_id", ""))
        loader = aws.Credentials if on_aws else identity_pool.Credentials
        creds = loader.from_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    else:
        raise ValueError(
            f"type {str(kind)[:40]!r}: expected service_account, authorized_user or "
            "external_account"
        )
    return creds


_SECRET_FIELDS = frozenset(
    {"private_key", "private_key_id", "client_secret", "refresh_token", "credential_source"}
)


def _failure_class(exc: Exception, loading: bool) -> ErrorClass:
    """Credentials that do not load, or that the token endpoint refuses, are ``auth``; an
    endpoint unreachable, failing or answering garbage is not (``auth`` alerts and the
    gateway's auth cooldown are for bad credentials)."""
    from google.auth import exceptions

    if loading:
        return ErrorClass.AUTH
    if isinstance(exc, exceptions.TransportError):
        if str(exc).startswith(_OVERSIZED):
            return ErrorClass.PROTOCOL
        # requests' ReadTimeout/ConnectTimeout, or our deadline on the whole answer.
        timed_out = "Timeout" in str(exc) or str(exc).startswith(_LATE)
        return ErrorClass.TIMEOUT if timed_out else ErrorClass.CONNECTION
    if isinstance(exc, exceptions.RefreshError):
        # google-auth's retryable: a 5xx, 408 or 429 (already retried); else a refusal.
        return ErrorClass.UNAVAILABLE if exc.retryable else ErrorClass.AUTH
    return ErrorClass.PROTOCOL  # the answer's garbage broke google-auth's parsing


def _secret_values(info: Any, secret: bool = False) -> list[str]:
    """The texts of a credentials JSON's secret fields, whole and line by line (a reason
    clipped mid-value still loses each whole line it shows)."""
    if isinstance(info, dict):
        pairs = info.items()
        return [v for k, item in pairs for v in _secret_values(item, secret or k in _SECRET_FIELDS)]
    if isinstance(info, list):
        return [v for item in info for v in _secret_values(item, secret)]
    if secret and isinstance(info, str):
        return [info, *info.split()]
    return []


def _reason(exc: Exception, secrets: Redactor) -> str:
    """Why loading or refreshing failed, without the credentials: the exception's class and
    its first argument (google-auth's message, the token endpoint's error), redacted, then
    clipped. A JSON decoding error names a position, not the text."""
    first = exc.args[0] if exc.args else ""
    text = first if isinstance(first, str) else repr(first)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    text = secrets(text)[:_REASON_CHARS]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
