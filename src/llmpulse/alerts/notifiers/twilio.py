"""Twilio: an SMS (``mode: sms``) or a voice call (``mode: call``) to each ``to`` number.

As Twilio's REST API and its SDKs do it: ``POST {api_url}/2010-04-01/Accounts/{AccountSid}/
Messages.json`` with the form fields ``To``, ``From`` and ``Body`` (an SMS), or ``Calls.json``
with ``To``, ``From`` and ``Twiml`` (a call), under HTTP basic auth with the Account SID and
the auth token. Twilio answers 201 and the new Message or Call (``sid``, ``status``, ...).

- An SMS is one segment: status, severity, rule, target and summary, e.g. ``[FIRING critical]
  error_rate_critical openai/gpt-4o: error rate 12% over 5m``, then the dashboard link if it
  fits. A page in several segments costs as many and may arrive in pieces.
- A call says the alert twice, a pause between, so that someone woken by it catches it. Calls
  are placed for firing notices only: an acknowledged or resolved notice places no call (nobody
  wants a 3 a.m. call saying it is fine) and is answered as delivered, saying so.
- One request per number. Which numbers Twilio accepted (or refused for good) is remembered
  per notice, in memory, so the outbox's retry after a partial failure sends only to the rest.
  Across a restart or a leader handover that memory is gone: delivery is at least once, as the
  outbox documents, and a number may be paged twice.
- 400 (21211 invalid ``To``, 21608 unverified number, 21610 unsubscribed, ...) is that number's
  refusal, for good; the other numbers are still tried. 401/403 (20003) and 404 are permanent
  too, for every number. 429 (20429) and 5xx are retried, honouring Retry-After, as are
  timeouts and connection failures; these stop the attempt, the rest wait for the retry.
- Errors name the channel, the number and Twilio's code and message, never the Account SID
  (which is in every URL) or the auth token: both must be environment references.

``api_url`` is Twilio's; it is a setting only so that tests can use a local fake of Twilio.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal
from xml.sax.saxutils import escape

import aiohttp
from yarl import URL

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.base import (
    ANSWER_MAX_BYTES,
    HTTP_TIMEOUT,
    DeliveryError,
    Notifier,
    headline,
    parse_retry_after,
    retryable_status,
    truncate,
)
from llmpulse.config.notifiers import TWILIO_API_URL
from llmpulse.secrets import Redactor, one_line

API_VERSION = "2010-04-01"
# One SMS segment: 160 septets of GSM-7, or 70 UTF-16 code units of UCS-2.
SMS_GSM7_MAX = 160
SMS_UCS2_MAX = 70
# Characters said (twice): well under a minute, and even with every one XML-escaped (at most
# five characters each) far within the 4000 characters Twilio takes as ``Twiml``.
SPOKEN_MAX = 300
# Notices whose partial delivery is remembered, and for how long after their last attempt: the
# outbox retries within minutes, and a repeat of the same page (same key) is hours later.
_PROGRESS_MAX = 256
_PROGRESS_TTL_S = 2 * 3600.0

# GSM 03.38: the basic table (escape left out) at one septet, its extension at two.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
# Typographic marks a summary may carry, as the GSM-7 text they stand for.
_AS_GSM7 = str.maketrans(
    {"…": "...", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "≥": ">=",
     "≤": "<=", "≠": "!=", "×": "x", "•": "-", "→": "->", "`": "'"}
)  # fmt: skip

_Key = tuple[str, str, int, datetime]


class TwilioNotifier(Notifier):
    type = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        sender: str,
        to: Sequence[str],
        mode: Literal["sms", "call"] = "sms",
        api_url: str = TWILIO_API_URL,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.mode = mode
        self.sender = sender
        self.to = list(dict.fromkeys(to))
        self.origin = str(URL(api_url).origin())
        resource = "Messages.json" if mode == "sms" else "Calls.json"
        self._url = f"{api_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/{resource}"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",  # HTTP basic auth, as Twilio takes it
            "Accept": "application/json",
            "User-Agent": "llmpulse",
        }
        # Twilio's answers are outside text, and the Account SID is in the URL an error may show.
        self._redact = Redactor([account_sid, auth_token])
        self._progress: collections.OrderedDict[_Key, _Progress] = collections.OrderedDict()

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        n = notification
        if self.mode == "call" and n.status is not AlertState.FIRING:
            return f"no call placed: this notice is {n.status}; calls are for firing alerts only"
        if self.mode == "sms":
            what, form = "SMS", {"From": self.sender, "Body": sms_body(n)}
        else:
            what, form = "call", {"From": self.sender, "Twiml": twiml(n)}
        key = (n.fingerprint, str(n.status), n.escalation_step, n.starts_at)
        progress = self._progress_for(key)
        stopped: tuple[str, _Failure] | None = None
        for number in self.to:
            if number in progress.accepted or number in progress.refused:
                continue  # a retry: this number has had its answer
            try:
                progress.accepted[number] = await self._create(session, {"To": number, **form})
            except _Failure as failure:
                if not failure.this_number_only:
                    stopped = number, failure
                    break
                progress.refused[number] = failure.reason
        if stopped is None and not progress.refused:
            self._progress.pop(key, None)
            answers = "; ".join(f"{to}: {answer}" for to, answer in progress.accepted.items())
            return f"{what} to {answers}"
        raise self._error(what, key, progress, stopped)

    async def _create(self, session: aiohttp.ClientSession, form: dict[str, str]) -> str:
        """One Message or Call; returns its status and sid, or raises _Failure."""
        try:
            async with session.post(
                self._url,
                data=form,  # form-encoded, as Twilio's API takes it
                headers=self._headers,
                timeout=HTTP_TIMEOUT,
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(ANSWER_MAX_BYTES)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            reason = f"no answer from {self.origin} within {HTTP_TIMEOUT.total:g}s"
            raise _Failure(reason, retryable=True) from None
        except aiohttp.ClientError as exc:
            detail = self._redact(str(exc) or type(exc).__name__)
            raise _Failure(f"{self.origin}: {detail}", retryable=True) from None
        answer = _json_object(raw)
        if 200 <= status < 300:
            created = f"{answer.get('status') or f'HTTP {status}'} {answer.get('sid') or ''}"
            return self._redact.clipped(created.strip())
        reason = f"HTTP {status} from {self.origin}"
        if answer.get("message"):
            reason += f": Twilio error {answer.get('code')}: {answer['message']}"
        elif raw.strip():  # not Twilio's JSON: a proxy's page, say
            reason += f": {' '.join(raw.decode(errors='replace').split())}"
        raise _Failure(
            self._redact.clipped(reason),
            retryable=retryable_status(status),
            retry_after_s=retry_after,
            # A 400 refuses this To (invalid, unverified, unsubscribed); anything else
            # (credentials, rate limit, an outage) would refuse every number alike.
            this_number_only=status == 400,
        )

    def _error(
        self, what: str, key: _Key, progress: _Progress, stopped: tuple[str, _Failure] | None
    ) -> DeliveryError:
        failed = dict(progress.refused)
        if stopped is not None:
            failed[stopped[0]] = stopped[1].reason
        message = f"{self.type} {self.name!r}: {what} to " + "; ".join(
            f"{to}: {reason}" for to, reason in failed.items()
        )
        untried = [to for to in self.to if to not in failed and to not in progress.accepted]
        if untried:
            message += f"; not tried yet: {', '.join(untried)}"
        if progress.accepted:
            message += f"; accepted: {', '.join(progress.accepted)}"
        retryable = stopped is not None and stopped[1].retryable
        if not retryable:
            self._progress.pop(key, None)  # the outbox will not try this notice again
        retry_after = stopped[1].retry_after_s if stopped is not None else None
        return DeliveryError(message, retryable=retryable, retry_after_s=retry_after)

    def _progress_for(self, key: _Key) -> _Progress:
        now = time.monotonic()
        progress = self._progress.pop(key, None)
        if progress is None or now - progress.attempted_at >= _PROGRESS_TTL_S:
            # A notice left unfinished long ago (another process finished it after a handover)
            # is forgotten: a repeat of that page, which has the same key, reaches everyone.
            progress = _Progress()
        progress.attempted_at = now
        # Least recently attempted first: the stale, and the oldest beyond the bound, go.
        while self._progress and (
            len(self._progress) >= _PROGRESS_MAX
            or now - next(iter(self._progress.values())).attempted_at >= _PROGRESS_TTL_S
        ):
            self._progress.popitem(last=False)
        self._progress[key] = progress
        return progress


@dataclasses.dataclass(slots=True)
class _Progress:
    """What became of one notice's numbers so far: number → Twilio's answer, or its refusal."""

    accepted: dict[str, str] = dataclasses.field(default_factory=dict)
    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    attempted_at: float = 0.0


class _Failure(Exception):
    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        this_number_only: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.this_number_only = this_number_only


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- what is sent ---------------------------------------------------------------------------------


def sms_body(n: Notification) -> str:
    """One segment: the headline, then the dashboard link when it fits whole.

    Emoji are dropped and typographic marks (… — ’ ≥) written as their GSM-7 equivalents
    before the encoding is chosen: they say nothing an alert needs, and one of them would
    switch the whole SMS to UCS-2 and cut it from 160 characters to 70. Text in another script
    (a Cyrillic target name) is kept, in UCS-2: rather a shorter SMS than a garbled one.
    """
    text = _gsm7_friendly(headline(n))
    if _is_gsm7(text):
        cost, limit, ellipsis = _septets, SMS_GSM7_MAX, "..."
    else:
        cost, limit, ellipsis = _utf16_units, SMS_UCS2_MAX, "…"
    link = n.url or ""
    if link and (_is_gsm7(link) or cost is _utf16_units):  # else it would make it UCS-2
        room = limit - 1 - cost(link)
        # The summary gives way to the link, as long as at least half the SMS stays text.
        if cost(text) <= room or room >= limit // 2:
            return f"{_fit(text, room, cost, ellipsis)} {link}"
    return _fit(text, limit, cost, ellipsis)


def twiml(n: Notification) -> str:
    """What a call says: the alert, a pause, and the alert again."""
    said = escape(_spoken(n))
    return f'<Response><Say>{said}</Say><Pause length="2"/><Say>{said}</Say></Response>'


def _spoken(n: Notification) -> str:
    test = "This is a test. " if n.test else ""
    step = (
        f" Escalation step {n.escalation_step}: nobody has acknowledged it yet."
        if n.escalation_step
        else ""
    )
    rule = n.rule.replace("_", " ")  # read as words, not as "underscore"
    summary = n.summary.strip().rstrip(".")
    text = f"{test}llmpulse alert, {n.severity}: {rule} is firing for {n.target}. {summary}.{step}"
    # One line, and no character XML 1.0 cannot carry.
    text = one_line(text)
    return truncate(text, SPOKEN_MAX)


def _gsm7_friendly(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_AS_GSM7)
    kept = "".join(c for c in text if _is_gsm7(c) or not _is_decoration(c))
    return " ".join(kept.split())  # one line, and no gap where an emoji was


def _is_decoration(c: str) -> bool:
    """Emoji and their modifiers, joiners and variation selectors; controls; unassigned."""
    category = unicodedata.category(c)
    return category in ("So", "Sk", "Cf", "Cc", "Cs", "Co", "Cn") or "\ufe00" <= c <= "\ufe0f"


def _is_gsm7(text: str) -> bool:
    return all(c in _GSM7 or c in _GSM7_EXTENSION for c in text)


def _septets(text: str) -> int:
    return sum(2 if c in _GSM7_EXTENSION else 1 for c in text)


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int, cost: Callable[[str], int], ellipsis: str) -> str:
    """``text`` cut, if it must be, to ``limit`` (in ``cost``'s units) with ``ellipsis``."""
    if cost(text) <= limit:
        return text
    budget, kept = limit - cost(ellipsis), []
    for c in text:
        budget -= cost(c)
        if budget < 0:
            break
        kept.append(c)
    return "".join(kept).rstrip() + ellipsis
