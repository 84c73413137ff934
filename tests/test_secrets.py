"""The one redactor: configured secrets in every encoding an echo uses, key-shaped text, the
secrets each part of a config contributes, and log lines."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from llmpulse.config import ConfigError, parse_config, with_web
from llmpulse.providers.openai import OpenAIProtocol
from llmpulse.result import EXCERPT_CHARS, CheckKind, CheckResult
from llmpulse.secrets import (
    MESSAGE_CHARS,
    PRE_CLIP_CHARS,
    REDACTED,
    Redactor,
    install_log_redaction,
    is_credential_header,
)
from test_security import SECRETS, leaks


def test_the_redactor_removes_every_form_an_upstream_echoes() -> None:
    redact = Redactor(SECRETS.values())
    secret = SECRETS["ANTHROPIC_KEY"]
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    echoes = [
        f"Incorrect API key provided: {SECRETS['OPENAI_KEY']}.",
        f"x-api-key: {secret}",
        f'{{"headers": {{"x-api-key": "{secret}"}}}}',
        f"received key={quote(secret, safe='')}&alt=sse",
        f"Authorization: Basic {basic}",
        f"echo {basic}",
        f"token {base64.b64encode(secret.encode()).decode()}",
        json.dumps({"message": f"bad key {secret}"}),
        # Key-shaped text that is not configured at all.
        "Incorrect API key provided: sk-proj-abcdefgh12345678****wxyz",
        "https://generativelanguage.googleapis.com/v1beta/models?key=AIzaSyD-0123456789abcdefghij",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "gsk_0123456789abcdefghijklmnop is not valid",
    ]
    for echo in echoes:
        cleaned = redact(echo)
        assert leaks(cleaned) == [], cleaned
        assert REDACTED in cleaned
    # Text without secrets stays readable.
    for text in ("Missing bearer token. Basic authentication failed", "upstream request id none"):
        assert redact(text) == text
    assert redact(None) is None


def test_more_encodings_and_schemes_of_an_echo() -> None:
    secret = "p@ss/w:rd-long-value"
    redact = Redactor([secret])
    for echo in (
        json.dumps(secret)[1:-1].replace("/", "\\/"),  # JSON as PHP and Java write it
        quote(secret, safe="").lower(),  # lower-case hex digits
        "Authorization: GenieKey abc123def456",  # a scheme word other than Bearer
    ):
        cleaned = redact(f"echo {echo} end")
        assert cleaned == f"echo {REDACTED} end" or cleaned == f"echo Authorization: {REDACTED} end"


def test_text_cut_before_redaction_keeps_no_part_of_a_secret() -> None:
    """Bodies are cut generously before redaction and short after, so a secret split at the
    first cut is gone with the second."""
    secret = "corp-gateway-4f1e9a7c2b8d4e6f0a1b2c3d"
    body = b"x" * (PRE_CLIP_CHARS - 20) + secret.encode() + b" trailing"
    error = OpenAIProtocol().parse_error(502, body, {})
    kept = Redactor([secret]).clipped(error.message)
    assert len(kept) == MESSAGE_CHARS and secret[:8] not in kept
    assert Redactor().clipped("short") == "short" and Redactor().clipped(None) is None


def test_a_long_base64_run_costs_linear_time() -> None:
    secret = SECRETS["ANTHROPIC_KEY"]
    echo = base64.b64encode(f"user:{secret}".encode()).decode()
    hostile = "A" * 200_000 + " " + echo + " " + "B" * 200_000
    started = time.perf_counter()
    cleaned = Redactor([secret])(hostile)
    assert leaks(cleaned) == [] and cleaned.count(REDACTED) == 1
    assert time.perf_counter() - started < 2  # quadratic took minutes at this size


def test_placeholders_and_short_values_are_no_secrets() -> None:
    assert Redactor(["none", "fake", "EMPTY", "abc", ""]).secrets == frozenset()
    # Short secrets are removed only as whole tokens.
    assert Redactor(["abcd1"])("abcd1 abcd12 xabcd1") == f"{REDACTED} abcd12 xabcd1"
    assert repr(Redactor(["a-long-secret-value"])) == "Redactor(1 secrets)"


def test_a_result_is_redacted_in_every_field_of_outside_text() -> None:
    secret = SECRETS["GEMINI_KEY"]
    result = CheckResult(
        "t", "openai", "m", CheckKind.STREAM, datetime.now(UTC), ok=False,
        error_message=f"HTTP 401: bad key {secret}", request_id=f"req {secret}",
        response_model=f"m ({secret})", system_fingerprint=secret, finish_reason=secret,
        warnings=[f"odd {secret}"], answer_excerpt=f"the key is {secret}",
    )  # fmt: skip
    assert leaks(json.dumps(Redactor([secret]).result(result).to_json())) == []
    assert result.answer_excerpt == f"the key is {REDACTED}"


def test_an_answer_excerpt_is_cut_after_redaction() -> None:
    secret = SECRETS["GEMINI_KEY"]
    answer = "x" * (EXCERPT_CHARS - 5) + secret + "y" * 5000
    result = CheckResult(
        "t", "openai", "m", "capital", datetime.now(UTC), ok=True, kind=CheckKind.INFERENCE,
        answer_excerpt=answer,
    )  # fmt: skip
    excerpt = Redactor([secret]).result(result).answer_excerpt
    assert excerpt == "x" * (EXCERPT_CHARS - 5) + REDACTED[:5]


def test_undecodable_header_bytes_become_storable_text() -> None:
    # aiohttp decodes a header's bytes with surrogateescape: b"req-\xff" arrives like this.
    raw = b"req-\xff-1".decode("utf-8", "surrogateescape")
    cleaned = Redactor()(raw)
    assert cleaned == "req-\\udcff-1"
    cleaned.encode("utf-8")  # storable
    assert Redactor()("req-中") == "req-中"


def test_credential_headers() -> None:
    for name in ("Authorization", "x-api-key", "api-key", "X-Goog-Api-Key", "Helicone-Auth",
                 "x-portkey-api-key", "Cookie"):  # fmt: skip
        assert is_credential_header(name), name
    for name in ("HTTP-Referer", "X-Title", "anthropic-version", "OpenAI-Organization",
                 "X-Max-Tokens", "X-Author"):  # fmt: skip
        assert not is_credential_header(name), name


def test_the_config_redactor_knows_every_configured_secret() -> None:
    env = dict(SECRETS) | {"HOOK_URL": "https://hooks.slack.com/services/T0/B0/hooktoken1234"}
    raw = {
        "storage": "postgresql://llmpulse:db-password-9999@db/llmpulse",
        "targets": [
            {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "api_key": "os.environ/OPENAI_KEY",
                "headers": {"X-Custom-Auth": "os.environ/CUSTOM_AUTH", "X-Title": "plain"},
            }
        ],
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {"model": "anthropic/claude", "api_key": "${DEPLOY_ANTHROPIC}"},
            }
        ],
        "general_settings": {"master_key": "os.environ/MASTER"},
        "notifiers": [
            {"type": "slack", "webhook_url": "os.environ/HOOK_URL"},
            {"type": "webhook", "url": "https://example.com/x", "secret": "${HOOK_SECRET}"},
        ],
        "web": {"token": "os.environ/WEB_TOKEN"},
    }
    config = parse_config(raw, env=env)
    redact = config.redactor
    for name in ("OPENAI_KEY", "CUSTOM_AUTH", "DEPLOY_ANTHROPIC", "MASTER", "HOOK_SECRET",
                 "WEB_TOKEN"):  # fmt: skip
        assert redact(f"echo {SECRETS[name]}") == f"echo {REDACTED}", name
    assert redact("at /services/T0/B0/hooktoken1234") == f"at {REDACTED}"
    assert redact("password db-password-9999") == f"password {REDACTED}"
    assert "plain" not in redact.secrets  # an ordinary header is no secret


def test_a_literal_credential_header_is_refused_in_a_target() -> None:
    target = {"provider": "openai", "api_key": "${K}", "headers": {"Authorization": "Bearer x1"}}
    with pytest.raises(ConfigError, match=r"targets\[0\]\.headers: header 'Authorization'") as exc:
        parse_config({"targets": [target]}, env={"K": "k"})
    assert "x1" not in str(exc.value)
    target["headers"] = {"Authorization": "os.environ/AUTH"}
    with pytest.raises(ConfigError, match=r"headers\.Authorization: environment variable AUTH"):
        parse_config({"targets": [target]}, env={"K": "k"})
    config = parse_config({"targets": [target]}, env={"K": "k", "AUTH": "Bearer x123456"})
    assert config.targets[0].headers == {"Authorization": "Bearer x123456"}
    assert "Bearer x123456" in config.targets[0].secrets


def test_serving_the_web_ui_needs_no_provider_key() -> None:
    raw = {
        "targets": [{"provider": "openai", "api_key": "os.environ/UNSET_KEY"}],
        "notifiers": [{"type": "pagerduty", "routing_key": "os.environ/UNSET_PD"}],
        "web": {"token": "os.environ/UNSET_TOKEN"},
    }
    with pytest.raises(ConfigError, match="UNSET_KEY"):
        parse_config(raw, env={})
    # The dashboard still needs its own credentials; the status page needs none.
    with pytest.raises(ConfigError, match=r"web\.token: environment variable UNSET_TOKEN"):
        parse_config(raw, env={}, serve_only="dashboard")
    config = parse_config(raw, env={}, serve_only="status_page")
    assert config.targets[0].api_key is None and config.notifiers == []
    assert config.web.token is None


def test_the_status_page_alone_needs_no_credentials_on_any_address() -> None:
    raw = {
        "targets": [{"provider": "openai", "api_key": "os.environ/UNSET_KEY"}],
        "web": {"listen": "0.0.0.0:8080", "token": "os.environ/UNSET_TOKEN"},
    }
    config = parse_config(raw, env={}, serve_only="status_page")
    assert not config.web.requires_auth
    with_web(config, listen="0.0.0.0:8081")  # a public host: still nothing to require
    with pytest.raises(ConfigError, match="UNSET_TOKEN"):
        parse_config(raw, env={}, serve_only="dashboard")


def test_a_shared_config_serves_the_web_ui_without_any_of_its_secrets() -> None:
    """The file the gateway and the monitor use, on a host holding none of its secrets."""
    deployment = {"model": "openai/gpt-4o", "api_key": "os.environ/K1",
                  "extra_headers": {"X-Auth": "os.environ/K2"}}  # fmt: skip
    raw = {
        "model_list": [{"model_name": "chat", "litellm_params": deployment}],
        "general_settings": {"master_key": "os.environ/MASTER"},
        "router_settings": {"redis_url": "os.environ/REDIS_URL"},
        "telemetry": {"headers": {"authorization": "os.environ/OTLP"}},
        "notifiers": [{"type": "pagerduty", "routing_key": "os.environ/PD"}],
        "web": {"listen": "0.0.0.0:8080", "token": "os.environ/TOKEN"},
    }
    with pytest.raises(ConfigError, match="not set"):
        parse_config(raw, env={})
    config = parse_config(raw, env={}, serve_only="status_page")
    assert [t.name for t in config.targets] == ["chat/openai/gpt-4o"]
    assert config.gateway is not None and config.gateway.settings.keys == ()
    assert config.telemetry is None and config.notifiers == [] and not config.web.requires_auth
    with pytest.raises(ConfigError, match=r"web\.token: environment variable TOKEN"):
        parse_config(raw, env={}, serve_only="dashboard")  # the dashboard keeps its own


def test_notifier_credentials_are_referenced_and_collected() -> None:
    hook = {"type": "webhook", "url": "https://hooks.example.com/x"}
    literal = {**hook, "headers": {"Authorization": "Bearer literal-token-1"}}
    with pytest.raises(ConfigError, match=r"notifiers\[0\]\.headers: header 'Authorization'") as e:
        parse_config({"targets": [{"provider": "openai", "api_key": "${K}"}],
                      "notifiers": [literal]}, env={"K": "k"})  # fmt: skip
    assert "literal-token-1" not in str(e.value)
    with_password = {**hook, "url": "https://user:hook-pass-9876@hooks.example.com/x"}
    config = parse_config(
        {"targets": [{"provider": "openai", "api_key": "${K}"}], "notifiers": [with_password]},
        env={"K": "k"},
    )
    assert config.redactor("pw hook-pass-9876") == f"pw {REDACTED}"


def test_log_lines_pass_the_redactor() -> None:
    logger = logging.getLogger("llmpulse.test_redact")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        install_log_redaction(Redactor([SECRETS["MASTER"]]), logger)
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "key %s failed", (SECRETS["MASTER"],), None
        )
        try:
            raise RuntimeError(f"boom {SECRETS['MASTER']}")
        except RuntimeError:
            record.exc_info = sys.exc_info()
        line = handler.format(record)
        assert leaks(line) == [] and line.count(REDACTED) == 2
        # Installing again swaps the redactor instead of stacking formatters.
        install_log_redaction(Redactor([SECRETS["WEB_TOKEN"]]), logger)
        assert handler.format(logger.makeRecord(
            logger.name, logging.INFO, __file__, 1, SECRETS["WEB_TOKEN"], (), None
        )) == REDACTED  # fmt: skip
    finally:
        logger.removeHandler(handler)


def test_an_uncaught_exception_is_logged_through_the_redactor() -> None:
    """Python prints an uncaught exception's traceback to stderr itself, past the log formatter;
    once the root logger redacts, it is logged instead, from the main thread and any other."""
    secret = SECRETS["MASTER"]
    code = f"""
import logging, threading
from llmpulse.secrets import Redactor, install_log_redaction
logging.basicConfig()
install_log_redaction(Redactor([{secret!r}]))
def boom():
    raise RuntimeError("thread " + {secret!r})
t = threading.Thread(target=boom, name="boomer")
t.start()
t.join()
raise RuntimeError("main " + {secret!r})
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "uncaught exception in thread boomer" in out.stderr
    assert f"RuntimeError: thread {REDACTED}" in out.stderr
    assert f"RuntimeError: main {REDACTED}" in out.stderr
    assert leaks(out.stderr) == []


def test_a_session_token_in_bedrocks_canonical_string_is_redacted() -> None:
    """Bedrock's InvalidSignatureException quotes the canonical request it expected, every
    signed header's value in it: a session token from the standard chain (SSO, a role) was
    never configured, so only its header's name can give it away."""
    token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIHx+Zm9v/YmFy=="
    message = (
        "The request signature we calculated does not match the signature you provided.\n\n"
        "The Canonical String for this request should have been\n'POST\n"
        "/model/us.anthropic.claude-sonnet-4-20250514-v1%253A0/converse\n\n"
        "content-type:application/json\nhost:bedrock-runtime.us-east-1.amazonaws.com\n"
        f"x-amz-date:20250921T101604Z\nx-amz-security-token:{token}\n\n"
        "content-type;host;x-amz-date;x-amz-security-token\nfea7815f'"
    )
    for echo in (message, json.dumps({"message": message}), f"X-Amz-Security-Token: {token}"):
        cleaned = Redactor()(echo)
        assert "IQoJb3JpZ2lu" not in cleaned and "YmFy" not in cleaned, cleaned
        assert "x-amz-date:20250921T101604Z" in cleaned or "X-Amz" in cleaned
