"""The Twilio channel against a fake of Twilio's REST API on loopback (tests/faketwilio.py), and
through the real outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from faketwilio import FakeTwilio, segments
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers import DeliveryError, build_notifiers
from llmpulse.alerts.notifiers.twilio import SPOKEN_MAX, TwilioNotifier, sms_body
from llmpulse.alerts.outbox import Outbox
from llmpulse.config import ConfigError
from llmpulse.config.notifiers import TWILIO_API_URL, resolve_notifiers
from llmpulse.rules import Severity
from llmpulse.secrets import Redactor

SID = "AC" + secrets.token_hex(16)
TOKEN = secrets.token_hex(16)
ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}
FROM, ALICE, BOB, CAROL = "+15005550006", "+14155550100", "+14155550101", "+14155550102"
STARTED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HEADLINE = "[FIRING critical] error_rate_critical openai/gpt-4o-mini: error rate 12% over 5m (threshold 5%)"


def make_notification(status: AlertState = AlertState.FIRING, **changes: Any) -> Notification:
    base = Notification(
        status=status,
        severity=Severity.CRITICAL,
        rule="error_rate_critical",
        target="openai/gpt-4o-mini",
        provider="openai",
        summary="error rate 12% over 5m (threshold 5%)",
        value=0.12,
        threshold=0.05,
        starts_at=STARTED,
        ends_at=STARTED if status is AlertState.RESOLVED else None,
        fingerprint="fp-4a7c9e",
    )
    return dataclasses.replace(base, **changes)


def config(**changes: Any) -> dict[str, Any]:
    return {
        "type": "twilio",
        "name": "phone",
        "account_sid": "os.environ/TWILIO_ACCOUNT_SID",
        "auth_token": "os.environ/TWILIO_AUTH_TOKEN",
        "from": FROM,
        "to": [ALICE],
        **changes,
    }


def phone(fake: FakeTwilio, **changes: Any) -> TwilioNotifier:
    [notifier] = build_notifiers(
        resolve_notifiers([config(**{"api_url": fake.url, **changes})], ENV)
    )
    assert isinstance(notifier, TwilioNotifier)
    return notifier


def septets(text: str) -> int:
    return sum(2 if c in "\f^{}\\[~]|€" else 1 for c in text)


def no_secrets(text: str) -> bool:
    return SID not in text and TOKEN not in text


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    server = await FakeTwilio(SID, TOKEN).start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"auth_token": "f00dSECRET"}, "notifiers[0].auth_token: must reference an environment"),
        ({"account_sid": "ACSECRET"}, "notifiers[0].account_sid: must reference an environment"),
        ({"from": "15005550006"}, "notifiers[0].from: expected an E.164 phone number"),
        ({"to": "+1 415 555 0100"}, "notifiers[0].to: expected an E.164 phone number"),
        ({"to": [ALICE, "+014155550100"]}, "notifiers[0].to[1]: expected an E.164 phone number"),
        ({"to": [ALICE + "\n"]}, "notifiers[0].to[0]: expected an E.164 phone number"),
        ({"to": ["+" + "1" * 16]}, "notifiers[0].to[0]: expected an E.164 phone number"),
        ({"to": []}, "notifiers[0].to: List should have at least 1 item"),
        ({"mode": "fax"}, "notifiers[0].mode: Input should be 'sms' or 'call'"),
        ({"api_url": "ftp://SECRET"}, "notifiers[0].api_url: expected an http"),
        # The credentials go with every request: plain http only to a loopback fake.
        ({"api_url": "http://api.example.com"}, "notifiers[0].api_url: expected an https:// URL"),
        (
            {"account_sid": "${NOT_A_SID}"},
            "notifiers[0].account_sid: expected a Twilio Account SID",
        ),
        ({"auth_token": "os.environ/UNSET"}, "notifiers[0].auth_token: environment variable UNSET"),
        ({"token": "SECRET"}, "notifiers[0].token: unknown key"),
    ],
)
def test_config_errors_name_the_key_and_hide_values(changes: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_notifiers([config(**changes)], {**ENV, "NOT_A_SID": "SECRET-not-a-sid"})
    assert error in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_config_missing_from_and_resolved_secrets() -> None:
    without_from = config()
    del without_from["from"]
    with pytest.raises(ConfigError, match=r"notifiers\[0\]\.from: required key is missing"):
        resolve_notifiers([without_from], ENV)

    [settings] = resolve_notifiers([config(to=ALICE, mode="call")], ENV)
    assert settings.config.to == [ALICE]  # one number needs no list
    assert settings.config.api_url == TWILIO_API_URL
    assert SID in settings.secrets and TOKEN in settings.secrets
    [notifier] = build_notifiers([settings])
    assert (notifier.type, notifier.name, notifier.mode) == ("twilio", "phone", "call")
    assert notifier.secrets == settings.secrets  # what the outbox's redactor is given
    assert no_secrets(repr(settings)) and no_secrets(repr(notifier))
    assert no_secrets(repr(settings.config))


# -- SMS -----------------------------------------------------------------------------------------


async def test_sms_is_form_encoded_with_basic_auth(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    notifier = phone(fake)
    answer = await notifier.send(make_notification(), session)

    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.auth == (SID, TOKEN)
    assert request.form == {"To": ALICE, "From": FROM, "Body": HEADLINE}
    assert request.status == 201
    assert answer.startswith(f"SMS to {ALICE}: queued SM") and no_secrets(answer)

    linked = make_notification(AlertState.ACKNOWLEDGED, url="https://pulse.example.com/alerts/fp")
    await notifier.send(linked, session)
    body = fake.requests[1].form["Body"]
    assert body.startswith("[ACKNOWLEDGED critical] error_rate_critical openai/gpt-4o-mini: ")
    assert body.endswith(" https://pulse.example.com/alerts/fp")


async def test_sms_is_one_segment(fake: FakeTwilio, session: aiohttp.ClientSession) -> None:
    link = "https://pulse.example.com/alerts/fp-4a7c9e"
    cases = {
        "long": make_notification(summary="error rate 12% over 5m " * 20),
        "long, linked": make_notification(summary="latency " * 40, url=link),
        "brackets": make_notification(summary="{[~]}" * 60),  # two septets each
        "emoji, typography": make_notification(
            summary="🔥 error rate ≥ 12% — “degraded” … 🚨", test=True
        ),
        "cyrillic": make_notification(target="яндекс/gpt", summary="ошибки 12% " * 10),
        "cyrillic, linked": make_notification(
            target="яндекс/gpt", summary="ошибки 12% " * 10, url="https://p.example/a/fp"
        ),
        # In UCS-2's 70 this link would leave less than half for the text: it is left out.
        "cyrillic, long link": make_notification(target="яндекс/gpt", summary="ошибки", url=link),
        "link too long to fit": make_notification(url="https://pulse.example.com/" + "x" * 150),
    }
    notifier = phone(fake)
    for notification in cases.values():
        await notifier.send(notification, session)
    bodies = dict(zip(cases, (r.form["Body"] for r in fake.requests), strict=True))
    assert [r.status for r in fake.requests] == [201] * len(cases)
    assert [a["Body"] for a in fake.accepted()] == list(bodies.values())
    assert set(fake.segments) == {1}  # as Twilio counts them

    gsm = [k for k in cases if not k.startswith("cyrillic")]
    for key in gsm:
        assert septets(bodies[key]) <= 160, key
    assert septets(bodies["long"]) == 160 and bodies["long"].endswith("...")
    assert bodies["long, linked"].endswith("... " + link)
    assert septets(bodies["brackets"]) in (159, 160) and bodies["brackets"].endswith("...")
    assert bodies["emoji, typography"] == (
        "[TEST] [FIRING critical] error_rate_critical openai/gpt-4o-mini: "
        'error rate >= 12% - "degraded" ...'
    )
    assert bodies["link too long to fit"] == HEADLINE
    for key in ("cyrillic", "cyrillic, linked", "cyrillic, long link"):
        assert len(bodies[key]) <= 70, key
    assert len(bodies["cyrillic"]) == 70 and bodies["cyrillic"].endswith("…")
    assert bodies["cyrillic, linked"].endswith("… https://p.example/a/fp")
    assert (
        bodies["cyrillic, long link"] == "[FIRING critical] error_rate_critical яндекс/gpt: ошибки"
    )


def test_sms_body_fits_one_segment_as_twilio_counts_them() -> None:
    for summary in ("x" * 500, "€" * 500, "日本語" * 100, "a\nb" * 100, "ok"):
        assert segments(sms_body(make_notification(summary=summary))) == 1, summary


# -- calls ---------------------------------------------------------------------------------------


async def test_call_says_the_alert_twice_escaped_and_only_when_firing(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    notifier = phone(fake, mode="call", to=[ALICE, BOB])
    firing = make_notification(summary="p95 <b>latency</b> & errors > 5% ]]>", escalation_step=2)
    answer = await notifier.send(firing, session)
    assert answer.startswith(f"call to {ALICE}: queued CA") and f"; {BOB}: queued CA" in answer

    first, second = fake.requests
    assert first.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert (first.form["To"], second.form["To"]) == (ALICE, BOB)
    assert set(first.form) == {"To", "From", "Twiml"} and first.form["From"] == FROM
    assert first.auth == (SID, TOKEN) and first.status == 201
    twiml = first.form["Twiml"]
    assert "&lt;b&gt;latency&lt;/b&gt; &amp; errors &gt; 5% ]]&gt;" in twiml
    response = ElementTree.fromstring(twiml)
    assert response.tag == "Response"
    assert [e.tag for e in response] == ["Say", "Pause", "Say"]
    said, pause, again = response
    assert said.text == again.text
    assert said.text == (
        "llmpulse alert, critical: error rate critical is firing for openai/gpt-4o-mini. "
        "p95 <b>latency</b> & errors > 5% ]]>. "
        "Escalation step 2: nobody has acknowledged it yet."
    )
    assert pause.attrib == {"length": "2"}

    for status in (AlertState.ACKNOWLEDGED, AlertState.RESOLVED):
        answer = await notifier.send(make_notification(status), session)
        assert (
            answer == f"no call placed: this notice is {status}; calls are for firing alerts only"
        )
    assert len(fake.requests) == 2  # nobody is called to hear that it is fine

    huge = make_notification(summary="&<>" * 2000, rule="r" * 500, test=True)
    await notifier.send(huge, session)
    twiml = fake.requests[2].form["Twiml"]
    assert len(twiml) <= 4000 and fake.requests[2].status == 201
    said = ElementTree.fromstring(twiml)[0].text or ""
    assert said.startswith("This is a test. llmpulse alert") and len(said) <= SPOKEN_MAX


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry_after", "retryable", "expected"),
    [
        ("invalid_to", None, False, "HTTP 400 from {url}: Twilio error 21211: The 'To' number"),
        ("unverified", None, False, "Twilio error 21608: The number"),
        ("unsubscribed", None, False, "Twilio error 21610: Attempt to send to unsubscribed"),
        ("rate_limited", "7", True, "HTTP 429 from {url}: Twilio error 20429: Too Many Requests"),
        ("server_error", None, True, "HTTP 500 from {url}: Twilio error 20500"),
    ],
)
async def test_twilio_errors_are_classified(
    fake: FakeTwilio,
    session: aiohttp.ClientSession,
    error: str,
    retry_after: str | None,
    retryable: bool,
    expected: str,
) -> None:
    fake.fail(error, retry_after=retry_after)
    with pytest.raises(DeliveryError) as caught:
        await phone(fake).send(make_notification(), session)
    message = str(caught.value)
    assert message.startswith(f"twilio 'phone': SMS to {ALICE}: ")
    assert expected.format(url=fake.url) in message
    assert caught.value.retryable is retryable
    assert caught.value.retry_after_s == (float(retry_after) if retry_after else None)
    assert no_secrets(message)


async def test_credentials_and_account_errors_are_permanent_and_redacted(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    fake.auth_token = "another-token"  # the one in the config is no longer valid
    wrong_token = phone(fake, to=[ALICE, BOB])
    with pytest.raises(DeliveryError) as caught:
        await wrong_token.send(make_notification(), session)
    assert not caught.value.retryable
    assert "HTTP 401" in str(caught.value) and "Twilio error 20003: Authenticate" in str(
        caught.value
    )
    assert f"not tried yet: {BOB}" in str(caught.value)  # the same credentials would fail again
    assert len(fake.requests) == 1

    fake.auth_token = TOKEN
    # Another path: Twilio's 404 quotes it, Account SID included; the error never does.
    elsewhere = phone(fake, api_url=f"{fake.url}/proxy")
    with pytest.raises(DeliveryError) as caught:
        await elsewhere.send(make_notification(), session)
    assert not caught.value.retryable
    assert "HTTP 404" in str(caught.value) and "Twilio error 20404" in str(caught.value)
    assert "/proxy/2010-04-01/Accounts/" in str(caught.value) and no_secrets(str(caught.value))


async def test_unreachable_twilio_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier = TwilioNotifier(SID, TOKEN, FROM, [ALICE], api_url=f"http://127.0.0.1:{port}")
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(make_notification(), session)
    assert caught.value.retryable
    assert str(caught.value).startswith(f"twilio 'twilio': SMS to {ALICE}: http://127.0.0.1:{port}")
    assert no_secrets(str(caught.value))


async def test_a_retry_sends_only_to_the_numbers_not_yet_accepted(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    notifier = phone(fake, to=[ALICE, BOB, CAROL])
    notification = make_notification()
    fake.fail("rate_limited", to=BOB, retry_after="1")
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(notification, session)
    assert caught.value.retryable and caught.value.retry_after_s == 1.0
    assert f"not tried yet: {CAROL}; accepted: {ALICE}" in str(caught.value)

    answer = await notifier.send(notification, session)  # the outbox's retry
    assert [r.form["To"] for r in fake.requests] == [ALICE, BOB, BOB, CAROL]
    assert [a["To"] for a in fake.accepted()] == [ALICE, BOB, CAROL]
    assert answer.count("queued SM") == 3 and answer.startswith(f"SMS to {ALICE}: queued")

    # Done with: the same page again (a repeat hours later has the same key) reaches everyone.
    await notifier.send(notification, session)
    assert [a["To"] for a in fake.accepted()][3:] == [ALICE, BOB, CAROL]


async def test_a_refused_number_fails_the_notice_after_the_others_have_it(
    fake: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    notifier = phone(fake, to=[ALICE, BOB, CAROL])
    notification = make_notification()
    fake.fail("unsubscribed", to=ALICE)
    fake.fail("server_error", to=BOB)
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(notification, session)
    assert caught.value.retryable  # Bob's outage; Alice's refusal stands
    assert str(caught.value).startswith(f"twilio 'phone': SMS to {ALICE}: HTTP 400")
    assert f"; {BOB}: HTTP 500" in str(caught.value) and f"not tried yet: {CAROL}" in str(
        caught.value
    )

    with pytest.raises(DeliveryError) as caught:
        await notifier.send(notification, session)
    assert not caught.value.retryable
    assert "Twilio error 21610" in str(caught.value)
    assert str(caught.value).endswith(f"; accepted: {BOB}, {CAROL}")
    assert [r.form["To"] for r in fake.requests] == [ALICE, BOB, BOB, CAROL]  # Alice once


# -- through the outbox --------------------------------------------------------------------------


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_outbox_retries_a_rate_limit_and_pages_each_number_once(
    fake: FakeTwilio, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    notifier = phone(fake, to=[ALICE, BOB])
    path = tmp_path / "outbox.db"
    outbox = Outbox(
        path,
        backoff_base_s=0.02,
        backoff_max_s=0.1,
        poll_interval_s=0.2,
        redactor=Redactor(notifier.secrets),
    )
    fake.fail("rate_limited", to=BOB, retry_after="1")
    stop = asyncio.Event()
    running = asyncio.create_task(outbox.run([notifier], session, stop))
    await asyncio.sleep(0)
    outbox.enqueue(make_notification(), ["phone"])
    await until(lambda: bool(outbox.history()) and not outbox.pending())
    await asyncio.sleep(0.3)  # longer than a poll: nothing more is sent
    stop.set()
    await asyncio.wait_for(running, 15)

    assert [a["To"] for a in fake.accepted()] == [ALICE, BOB]
    bob = [r for r in fake.requests if r.form["To"] == BOB]
    assert [r.status for r in bob] == [429, 201]
    assert bob[1].at - bob[0].at >= 0.9  # Retry-After: 1, where the backoff alone is 0.02 s
    [item] = outbox.history()
    assert (item.status, item.attempts) == ("delivered", 2)
    assert item.last_error is not None and "Twilio error 20429" in item.last_error
    assert item.answer is not None and item.answer.count("queued SM") == 2
    outbox.close()
    assert SID.encode() not in path.read_bytes() and TOKEN.encode() not in path.read_bytes()
