"""A fake of Twilio's REST API on a loopback socket: Messages and Calls, as the real one answers.

It implements what llmpulse's Twilio channel uses, the way Twilio does (and its SDKs expect):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (``To``, ``From``, ``Body``) and
  ``.../Calls.json`` (``To``, ``From``, ``Twiml``), form-encoded, under HTTP basic auth with
  the Account SID and auth token: 401 with error 20003 otherwise, 404 with 20404 for any other
  path (another account's too); 400 with Twilio's code when a field is missing or not E.164 (21211), when a
  body exceeds 1600 characters (21617), when the TwiML exceeds 4000 characters (32018) or does
  not parse (12100).
- 201 with the created Message (``SM`` + 32 hex, ``status: queued``, ``num_segments`` counted
  as Twilio counts them) or Call (``CA`` + 32 hex, ``status: queued``).
- Errors in Twilio's shape, ``{"code", "message", "more_info", "status"}``; ``fail`` scripts
  them (a refused number, a rate limit with Retry-After, an outage) for the next N requests.

Every request is recorded, with its form and the credentials it carried.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
import secrets
import time
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

API_VERSION = "2010-04-01"
_RESOURCE = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/(Messages|Calls)\.json")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# GSM 03.38 (basic table without escape; extension), to count segments as Twilio does.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# Errors a test can script, as Twilio answers them ({to} is the request's To).
ERRORS: dict[str, tuple[int, int, str]] = {
    "invalid_to": (400, 21211, "The 'To' number {to} is not a valid phone number."),
    "unverified": (
        400,
        21608,
        "The number {to} is unverified. Trial accounts cannot send messages to unverified "
        "numbers; verify {to} at twilio.com/user/account/phone-numbers/verified, or purchase a "
        "Twilio number to send messages to unverified numbers.",
    ),
    "unsubscribed": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "rate_limited": (429, 20429, "Too Many Requests"),
    "server_error": (500, 20500, "An internal server error has occurred"),
}


@dataclasses.dataclass
class Request:
    path: str
    content_type: str
    form: dict[str, str]
    auth: tuple[str, str] | None  # (username, password) of its basic auth
    status: int  # what the fake answered
    at: float  # time.monotonic() when it came


@dataclasses.dataclass
class _Scripted:
    error: str
    times: int
    to: str | None
    retry_after: str | None


def segments(body: str) -> int:
    """How many SMS segments ``body`` takes (single ones hold 160 / 70, parts 153 / 67)."""
    if all(c in _GSM7 or c in _GSM7_EXTENSION for c in body):
        septets = sum(2 if c in _GSM7_EXTENSION else 1 for c in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[Request] = []
        self.segments: list[int] = []  # of each Message created, as Twilio counts them
        self.url = ""
        self._script: list[_Scripted] = []
        self._runner: web.AppRunner | None = None

    def fail(
        self, error: str, times: int = 1, to: str | None = None, retry_after: str | None = None
    ) -> None:
        """Answer ``ERRORS[error]`` to the next ``times`` requests (to ``to`` only, if given)."""
        self._script.append(_Scripted(error, times, to, retry_after))

    def accepted(self, resource: str = "Messages") -> list[dict[str, str]]:
        """The forms of the requests that created a Message (or Call)."""
        return [
            r.form
            for r in self.requests
            if r.status == 201 and r.path.endswith(f"/{resource}.json")
        ]

    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        # Twilio reads parameters from a form body only; a JSON body carries none.
        form = (
            {k: str(v) for k, v in (await request.post()).items()}
            if request.content_type == "application/x-www-form-urlencoded"
            else {}
        )
        auth = _basic_auth(request.headers.get("Authorization"))
        response = self._answer(request, form, auth)
        self.requests.append(
            Request(request.path, content_type, form, auth, response.status, time.monotonic())
        )
        return response

    def _answer(
        self, request: web.Request, form: dict[str, str], auth: tuple[str, str] | None
    ) -> web.Response:
        if auth != (self.account_sid, self.auth_token):
            response = _error(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        resource = _RESOURCE.fullmatch(request.path)
        if resource is None or resource[1] != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        to = form.get("To", "")
        for scripted in self._script:
            if scripted.times > 0 and scripted.to in (None, to):
                scripted.times -= 1
                status, code, message = ERRORS[scripted.error]
                response = _error(status, code, message.format(to=to))
                if scripted.retry_after is not None:
                    response.headers["Retry-After"] = scripted.retry_after
                return response
        if resource[2] == "Messages":
            return self._message(form)
        return self._call(form)

    def _message(self, form: dict[str, str]) -> web.Response:
        if not form.get("To"):
            return _error(400, 21604, "A 'To' phone number is required.")
        if not form.get("From"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        if not _E164.fullmatch(form["To"]):
            return _error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number.")
        if len(form["Body"]) > 1600:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        sid = "SM" + secrets.token_hex(16)
        self.segments.append(segments(form["Body"]))
        return self._created(
            "Messages",
            sid,
            {
                "body": form["Body"],
                "num_segments": str(self.segments[-1]),
                "num_media": "0",
                "direction": "outbound-api",
                "messaging_service_sid": None,
                "error_code": None,
                "error_message": None,
                "date_sent": None,
                "price": None,
                "price_unit": "USD",
                "subresource_uris": {"media": self._uri("Messages", sid, "/Media")},
            },
            form,
        )

    def _call(self, form: dict[str, str]) -> web.Response:
        if not form.get("To"):
            return _error(400, 21201, "No 'To' number is specified")
        if not form.get("From"):
            return _error(400, 21213, "No 'From' number is specified")
        if not form.get("Twiml") and not form.get("Url"):
            return _error(400, 21205, "Url parameter is required.")
        if not _E164.fullmatch(form["To"]):
            return _error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number.")
        twiml = form.get("Twiml", "")
        if len(twiml) > 4000:
            return _error(
                400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters"
            )
        try:
            ElementTree.fromstring(twiml)
        except ElementTree.ParseError:
            return _error(400, 12100, "Document parse failure")
        sid = "CA" + secrets.token_hex(16)
        return self._created(
            "Calls",
            sid,
            {
                "to_formatted": form["To"],
                "from_formatted": form["From"],
                "direction": "outbound-api",
                "parent_call_sid": None,
                "phone_number_sid": "PN" + secrets.token_hex(16),
                "start_time": None,
                "end_time": None,
                "duration": None,
                "price": None,
                "price_unit": "USD",
                "answered_by": None,
                "annotation": None,
                "forwarded_from": None,
                "group_sid": None,
                "caller_name": None,
                "queue_time": "0",
                "trunk_sid": None,
                "subresource_uris": {
                    name: self._uri("Calls", sid, f"/{name.title()}")
                    for name in ("notifications", "recordings")
                },
            },
            form,
        )

    def _created(
        self, resource: str, sid: str, fields: dict[str, Any], form: dict[str, str]
    ) -> web.Response:
        now = format_datetime(datetime.now(UTC).replace(microsecond=0))
        document = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "from": form["From"],
            "sid": sid,
            "status": "queued",
            "to": form["To"],
            "uri": self._uri(resource, sid, ""),
            **fields,
        }
        return web.json_response(document, status=201)

    def _uri(self, resource: str, sid: str, sub: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/{resource}/{sid}{sub}.json"


def _error(status: int, code: int, message: str) -> web.Response:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more_info, "status": status}
    return web.json_response(body, status=status)


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None
