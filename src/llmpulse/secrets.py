"""Secrets: where they come from (environment references) and the one redactor that keeps them
in (text from outside llmpulse passes through it where it comes in).

A secret in a config file is only ever a reference, ``os.environ/NAME`` or ``${NAME}``
(``env_var``), read from the environment when the config is loaded.

Provider error bodies and messages, response headers (request ids), the fields of a response
(served model, ids), in-stream error events and exception strings can hold anything, our own
keys included: OpenAI's 401 says "Incorrect API key provided: sk-...", and proxies echo the
``Authorization`` or ``x-api-key`` header they received. Whatever measures a provider (the probe,
the gateway, ``instrument()``) passes such text through a ``Redactor`` as it takes it in, so what
is stored, logged, printed, exported (OTLP, Prometheus), sent to a notifier or returned to a
gateway client is already clean; the log formatter (``install_log_redaction``) passes every line
through it once more, for exception strings nobody anticipated, and uncaught exceptions are
logged rather than printed past it.

A redactor removes:

- every configured secret (keys of targets and deployments, credential headers, notifier
  secrets, web credentials, master and gateway keys, ...), key-shaped or not, also URL-encoded,
  JSON-escaped, base64-encoded, or inside a base64 basic-auth value;
- anything key-shaped: provider keys (``sk-...``, ``sk-ant-...``, ``AIza...``, ``gsk_...``,
  ``xai-...``), ``Bearer``/``Basic`` credentials, credential header echoes
  (``x-api-key: <value>``) and ``key=`` query parameters.

Values shorter than ``MIN_SECRET_CHARS`` and the placeholders LiteLLM users write for servers
that check no key (``none``, ``fake``, ...) are not secrets: replacing every "none" in every
message would hide what went wrong and protect nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TypeGuard, overload
from urllib.parse import quote, quote_plus, unquote, urlsplit

from llmpulse.result import EXCERPT_CHARS, CheckResult

_ENV_REF = re.compile(r"^(?:os\.environ/([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\})$")


def env_var(value: str) -> str | None:
    """The variable named by a secret reference (``os.environ/NAME`` or ``${NAME}``), else None."""
    match = _ENV_REF.match(value.strip())
    return (match.group(1) or match.group(2)) if match else None


REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4
# Keys written for local servers that accept any key: not secrets (compared lower-cased).
PLACEHOLDERS = frozenset(
    {"none", "null", "empty", "fake", "dummy", "test", "unused", "anything", "placeholder"}
)
# Secrets this short are matched only as whole tokens: "test1" must not cut "test123" apart.
_TOKEN_SECRET_CHARS = 8

# Header names whose values are credentials: any of these words as a part of the name
# (x-portkey-api-key, helicone-auth, x-auth-token), not inside another (x-max-tokens, x-author).
_CREDENTIAL_WORDS = frozenset(
    {"auth", "authorization", "key", "apikey", "token", "secret", "password", "passwd",
     "cookie", "credential", "credentials", "signature"}
)  # fmt: skip
# Outside text kept in a record or an error answer is clipped to this after redaction. Text is
# cut before redaction only far beyond it (``PRE_CLIP_CHARS``), so a secret cut in two there is
# never in what remains.
MESSAGE_CHARS = 500
PRE_CLIP_CHARS = 4096

# Key-shaped text, one pattern with a group per kind (one scan instead of four):
_KEY_SHAPED = re.compile(
    # A credential header echoed as text: the value up to a delimiter, its scheme word too.
    # AWS's session token: Bedrock's signature errors quote the signed headers' values, one a
    # line (no \b: in a raw JSON body the line before ends in a literal "\n").
    r"(?P<header>(?i:\b(?:proxy-)?authorization|\bx-(?:goog-)?api-key|\bapi-key|\bx-llmpulse-key"
    r"|x-amz-security-token|\bcookie)\\?[\"']?\s*[:=]\s*\\?[\"']?)(?:[A-Za-z]+\s+)?[^\s\"'\\,;}&]+"
    # A credential after its scheme word; it must look like one (a digit, a symbol or a case
    # change inside it), so "basic authentication failed" stays readable.
    r"|(?P<scheme>(?i:\b(?:bearer|basic))\s+)"
    r"(?=[A-Za-z0-9_\-.=~+/:]*(?:[0-9=+/_]|[a-z][A-Z]))[A-Za-z0-9_\-.=~+/:]{6,}"
    # A key in a query string (Gemini's ?key=, signed URLs).
    r"|(?P<query>(?i:[?&;](?:key|api[_-]?key|access[_-]?token|token|auth|sig|signature)=))"
    r"[^&\s\"'#]+"
    # Provider keys: OpenAI (sk-, sk-proj-, sk-svcacct-, and the masked "sk-proj-****abcd" it
    # prints back), Anthropic (sk-ant-), Groq (gsk_), xAI (xai-), OpenRouter (sk-or-), Google.
    r"|\b(?:sk|pk|rk|gsk|xai)[-_][A-Za-z0-9_\-*.]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
    # Google OAuth2 access tokens (Vertex AI's Bearer tokens), echoed without their scheme.
    r"|\bya29\.[A-Za-z0-9_\-.]{8,}"
)
_B64_CHARS = r"[A-Za-z0-9+/_\-]"
_B64_START = r"(?<![A-Za-z0-9+/_\-])"
_URLSAFE = str.maketrans("+/", "-_")


def one_line(text: str) -> str:
    """Outside text fit for a line of a message (chat, SMS, speech): every control character,
    line breaks included, and every run of white space become one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def is_credential_header(name: str) -> bool:
    """Whether a request header's value is a credential (Authorization, x-api-key, ...)."""
    return not _CREDENTIAL_WORDS.isdisjoint(re.split(r"[-_.\s]+", name.lower()))


def credentials(api_key: str | None, headers: Mapping[str, str]) -> tuple[str, ...]:
    """The secrets of an upstream's request: its key and its credential headers' values."""
    return tuple(
        v for v in (api_key, *(v for k, v in headers.items() if is_credential_header(k))) if v
    )


def url_password(url: str | None) -> tuple[str, ...]:
    """The password of a URL (a database's, Redis's, a webhook's), a secret like any key."""
    if not url or "://" not in url:
        return ()
    password = urlsplit(url).password
    return (unquote(password),) if password else ()


def is_secret(value: str | None) -> TypeGuard[str]:
    """Whether ``value`` is worth redacting (not a placeholder or a few characters)."""
    if not value:
        return False
    stripped = value.strip()
    return len(stripped) >= MIN_SECRET_CHARS and stripped.lower() not in PLACEHOLDERS


class Redactor:
    """Removes configured secrets and key-shaped text; immutable."""

    __slots__ = ("_base64", "_long", "_short", "secrets")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: frozenset[str] = frozenset(s.strip() for s in secrets if is_secret(s))
        variants: set[str] = set()
        for secret in self.secrets:
            variants.update(_variants(secret))
        # Longest first, so a secret containing another is removed whole.
        ordered = sorted(variants, key=len, reverse=True)
        self._long = tuple(v for v in ordered if len(v) >= _TOKEN_SECRET_CHARS)
        short = [re.escape(v) for v in ordered if len(v) < _TOKEN_SECRET_CHARS]
        self._short = (
            re.compile(r"(?<![A-Za-z0-9_\-])(?:" + "|".join(short) + r")(?![A-Za-z0-9_\-])")
            if short
            else None
        )
        # Base64 of anything containing a secret (a basic-auth "user:secret") contains one of
        # three aligned encodings of it; found by substring, the whole base64 token goes.
        # Anchored at the token's start: matching from inside a long base64 run would rescan it
        # from every position (quadratic in what a hostile upstream sends).
        self._base64 = tuple(
            (
                core,
                re.compile(
                    _B64_START + _B64_CHARS + "*" + re.escape(core) + _B64_CHARS + "*={0,2}"
                ),
            )
            for secret in self.secrets
            for core in _base64_cores(secret.encode())
        )

    def __repr__(self) -> str:
        return f"Redactor({len(self.secrets)} secrets)"  # never the secrets themselves

    @overload
    def __call__(self, text: str) -> str: ...
    @overload
    def __call__(self, text: None) -> None: ...
    def __call__(self, text: str | None) -> str | None:
        """``text`` with every secret and key-shaped string replaced by ``[redacted]`` (and
        any undecodable bytes it carried escaped)."""
        if not text:
            return text
        if not text.isascii():
            text = _storable(text)
        for secret in self._long:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        for core, token in self._base64:
            if core in text:
                text = token.sub(REDACTED, text)
        return _KEY_SHAPED.sub(_key_shaped, text)

    @overload
    def clipped(self, text: str) -> str: ...
    @overload
    def clipped(self, text: None) -> None: ...
    def clipped(self, text: str | None) -> str | None:
        """``text`` redacted, then cut to ``MESSAGE_CHARS``: what a record or an answer keeps
        of outside text."""
        text = self(text)
        if text is None or len(text) <= MESSAGE_CHARS:
            return text
        return text[: MESSAGE_CHARS - 1] + "…"

    def result(self, result: CheckResult) -> CheckResult:
        """``result`` (changed in place) with every field that holds outside text redacted."""
        result.error_message = self.clipped(result.error_message)
        result.request_id = self.clipped(result.request_id)
        result.response_model = self.clipped(result.response_model)
        result.system_fingerprint = self.clipped(result.system_fingerprint)
        result.finish_reason = self.clipped(result.finish_reason)
        result.warnings = [self.clipped(w) for w in result.warnings]
        if result.answer_excerpt is not None:
            # Cut after redaction: a secret the cut splits would survive in part.
            result.answer_excerpt = self(result.answer_excerpt)[:EXCERPT_CHARS]
        return result


def _variants(secret: str) -> set[str]:
    """How a secret may be written back to us as text: as is, URL-encoded (either case of hex
    digits), JSON-escaped (also with ``\\/``, as PHP and Java write it)."""
    escaped = json.dumps(secret)[1:-1]
    variants = {
        secret,
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    for quoted in (quote(secret, safe=""), quote_plus(secret, safe="")):
        variants |= {quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)}
    return variants


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 characters that only ``secret`` decides, at each of the three alignments it
    can have inside a longer encoded value, in the standard and the URL-safe alphabet."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret).decode()
        # Character i covers bits 6i..6i+6 of the input; the secret's are 8*offset..8*(offset+n).
        first = -(-8 * offset // 6)
        last = (8 * (offset + len(secret)) - 6) // 6
        core = encoded[first : last + 1]
        cores |= {core, core.translate(_URLSAFE)}
    return cores


def _storable(text: str) -> str:
    """``text`` as valid Unicode: aiohttp hands over a header's undecodable bytes as lone
    surrogates, which no database, log or JSON encoder takes; they are written as escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _key_shaped(match: re.Match[str]) -> str:
    """The match redacted, keeping the header name or scheme word before the credential."""
    kept = match.group("header") or match.group("scheme") or match.group("query") or ""
    return kept + REDACTED


NO_SECRETS = Redactor()


class _RedactingFormatter(logging.Formatter):
    """Formats as the handler's own formatter would, then redacts the whole line (tracebacks
    included)."""

    def __init__(self, inner: logging.Formatter | None, redactor: Redactor) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(self.inner.format(record))


def install_log_redaction(redactor: Redactor, logger: logging.Logger | None = None) -> None:
    """Pass every line the handlers of ``logger`` (default: the root logger) write through
    ``redactor``; calling it again replaces the redactor (e.g. once the config is loaded).

    For the root logger, an uncaught exception (of the main thread or any other) is logged too,
    where Python would print its traceback to stderr past the redactor."""
    for handler in (logger or logging.getLogger()).handlers:
        current = handler.formatter
        if isinstance(current, _RedactingFormatter):
            current.redactor = redactor
        else:
            handler.setFormatter(_RedactingFormatter(current, redactor))
    if logger is None:
        sys.excepthook = log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """``sys.excepthook``: the traceback as a log line, so it passes the redactor."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("llmpulse").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return  # as Python's own hook: a thread's SystemExit ends it quietly
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("llmpulse").critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
