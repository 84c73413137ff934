"""The one redactor: text from outside llmpulse passes through it where it comes in.

Provider error bodies and messages, response headers (request ids), the fields of a response
(served model, ids), in-stream error events and exception strings can hold anything, our own
keys included: OpenAI's 401 says "Incorrect API key provided: sk-...", and proxies echo the
``Authorization`` or ``x-api-key`` header they received. Whatever measures a provider (the probe,
the gateway, ``instrument()``) passes such text through a ``Redactor`` as it takes it in, so what
is stored, logged, printed, exported (OTLP, Prometheus), sent to a notifier or returned to a
gateway client is already clean; the log formatter (``install_log_redaction``) passes every line
through it once more, for exception strings nobody anticipated.

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
import binascii
import json
import logging
import re
from collections.abc import Iterable
from typing import overload
from urllib.parse import quote, quote_plus

from llmpulse.result import CheckResult

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4
# Keys written for local servers that accept any key: not secrets (compared lower-cased).
PLACEHOLDERS = frozenset(
    {"none", "null", "empty", "fake", "dummy", "test", "unused", "anything", "placeholder"}
)
# Secrets this short are matched only as whole tokens: "test1" must not cut "test123" apart.
_TOKEN_SECRET_CHARS = 8

# Header names whose values are credentials; a header whose name merely mentions one of these
# words (x-portkey-api-key, helicone-auth) counts too.
_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "password", "cookie", "credential")

_KEY_SHAPED = re.compile(
    # Provider keys: OpenAI (sk-, sk-proj-, sk-svcacct-, and the masked "sk-proj-****abcd" it
    # prints back), Anthropic (sk-ant-), Groq (gsk_), xAI (xai-), OpenRouter (sk-or-), Google.
    r"\b(?:sk|pk|rk|gsk|xai)[-_][A-Za-z0-9_\-*.]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
)
# A credential header echoed as text: the value up to a delimiter, including its scheme word.
_HEADER_ECHO = re.compile(
    r"(?i)(\b(?:proxy-)?authorization|\bx-(?:goog-)?api-key|\bapi-key|\bx-llmpulse-key"
    r"|\bcookie)(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"((?:bearer|basic|token)\s+)?[^\s\"'\\,;}&]+"
)
# A credential after its scheme word; it must look like one (a digit, a symbol or a case change
# inside it), so "basic authentication failed" stays readable.
_SCHEME = re.compile(
    r"(?i)\b(bearer|basic)(\s+)"
    r"(?=[A-Za-z0-9_\-.=~+/:]*(?:[0-9=+/_]|(?-i:[a-z][A-Z])))[A-Za-z0-9_\-.=~+/:]{6,}"
)
_QUERY_KEY = re.compile(
    r"(?i)([?&;](?:key|api[_-]?key|access[_-]?token|token|auth|sig|signature)=)[^&\s\"'#]+"
)
# Candidates for base64 of a secret (a basic-auth value echoed without its scheme word).
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{12,}={0,2}")


def is_credential_header(name: str) -> bool:
    """Whether a request header's value is a credential (Authorization, x-api-key, ...)."""
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def is_secret(value: str | None) -> bool:
    """Whether ``value`` is worth redacting (not a placeholder or a few characters)."""
    if not value:
        return False
    stripped = value.strip()
    return len(stripped) >= MIN_SECRET_CHARS and stripped.lower() not in PLACEHOLDERS


class Redactor:
    """Removes configured secrets and key-shaped text. Immutable; ``|`` combines two."""

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
        self._base64 = tuple(s.encode() for s in self.secrets)

    def __or__(self, other: Redactor) -> Redactor:
        return Redactor(self.secrets | other.secrets)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redactor) and other.secrets == self.secrets

    def __hash__(self) -> int:
        return hash(self.secrets)

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
        text = _HEADER_ECHO.sub(_header_value, text)
        text = _SCHEME.sub(r"\1\2" + REDACTED, text)
        text = _QUERY_KEY.sub(r"\1" + REDACTED, text)
        text = _KEY_SHAPED.sub(REDACTED, text)
        if self._base64:
            text = _BASE64.sub(self._decoded_secret, text)
        return text

    def result(self, result: CheckResult) -> CheckResult:
        """``result`` (changed in place) with every field that holds outside text redacted."""
        result.error_message = self(result.error_message)
        result.request_id = self(result.request_id)
        result.response_model = self(result.response_model)
        result.system_fingerprint = self(result.system_fingerprint)
        result.finish_reason = self(result.finish_reason)
        result.warnings = [self(w) for w in result.warnings]
        return result

    def _decoded_secret(self, match: re.Match[str]) -> str:
        token = match.group(0)
        try:
            decoded = base64.b64decode(token.replace("-", "+").replace("_", "/") + "==")
        except (binascii.Error, ValueError):
            return token
        return REDACTED if any(s in decoded for s in self._base64) else token


def _variants(secret: str) -> set[str]:
    """How a secret may be written back to us: as is, URL-encoded, JSON-escaped, base64."""
    encoded = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(encoded).decode().rstrip("="),
        base64.urlsafe_b64encode(encoded).decode().rstrip("="),
    }


def _storable(text: str) -> str:
    """``text`` as valid Unicode: aiohttp hands over a header's undecodable bytes as lone
    surrogates, which no database, log or JSON encoder takes; they are written as escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _header_value(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


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
    ``redactor``; calling it again replaces the redactor (e.g. once the config is loaded)."""
    for handler in (logger or logging.getLogger()).handlers:
        current = handler.formatter
        if isinstance(current, _RedactingFormatter):
            current.redactor = redactor
        else:
            handler.setFormatter(_RedactingFormatter(current, redactor))
