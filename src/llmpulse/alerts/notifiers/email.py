"""Email over SMTP: STARTTLS on 587 by default, or implicit TLS (``ssl``) on 465.

A plain-text message whose subject is the alert's headline, e.g.
``[FIRING critical] error_rate_critical openai/gpt-4o-mini: error rate 12% over 5m``.
SMTP 4xx replies and connection or TLS failures are retried; 5xx replies and a server that
lacks what the config asks for (STARTTLS, AUTH) are permanent.
``password`` must be an environment reference.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiohttp
import aiosmtplib

from llmpulse.alerts.model import Notification
from llmpulse.alerts.notifiers.base import DeliveryError, Notifier, facts, headline, truncate

SMTP_TIMEOUT = 10.0
_SUBJECT_MAX = 200


class EmailNotifier(Notifier):
    type = "email"

    def __init__(
        self,
        host: str,
        sender: str,
        to: Sequence[str],
        port: int,
        name: str | None = None,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        ssl_tls: bool = False,
        ca_file: str | None = None,
        verify: bool = True,
    ) -> None:
        super().__init__(name)
        self.host = host
        self.port = port
        self.sender = sender
        self.to = list(to)
        self._username = username
        self._password = password
        self._starttls = starttls and not ssl_tls
        self._ssl = ssl_tls
        self._tls_context = ssl.create_default_context(cafile=ca_file)
        if not verify:
            self._tls_context.check_hostname = False
            self._tls_context.verify_mode = ssl.CERT_NONE

    def render(self, notification: Notification) -> EmailMessage:
        n = notification
        message = EmailMessage()
        # One line: a line break in a summary must not end the header.
        message["Subject"] = truncate(" ".join(headline(n).split()), _SUBJECT_MAX)
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="llmpulse")
        width = max(len(label) for label, _ in facts(n))
        lines = [n.summary, ""]
        lines += [f"{label + ':':<{width + 1}} {value}" for label, value in facts(n)]
        lines += [f"{'Fingerprint:':<{width + 1}} {n.fingerprint}", ""]
        if n.test:
            lines.append("This is a test notification sent by `llmpulse notify test`.")
        lines.append("-- llmpulse")
        message.set_content("\n".join(lines) + "\n")
        return message

    async def send(self, notification: Notification, session: aiohttp.ClientSession) -> str:
        where = f"email {self.name!r}"
        try:
            errors, reply = await aiosmtplib.send(
                self.render(notification),
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                use_tls=self._ssl,
                tls_context=self._tls_context,
                timeout=SMTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            refused = ", ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
            raise DeliveryError(
                f"{where}: every recipient refused by {self.host}: {refused}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{where}: SMTP {exc.code} from {self.host}: {exc.message}",
                retryable=exc.code < 500,
            ) from None
        except OSError as exc:  # refused, reset, timed out, TLS handshake: worth another try
            detail = f"{self.host}:{self.port}: {str(exc) or type(exc).__name__}"
            raise DeliveryError(f"{where}: {detail}", retryable=True) from None
        except aiosmtplib.SMTPException as exc:
            # STARTTLS or AUTH not offered, non-ASCII address...: configuration, not an outage.
            raise DeliveryError(f"{where}: {self.host}: {exc}", retryable=False) from None
        answer = f"SMTP accepted: {reply.strip()}"
        if errors:
            answer += f" (refused: {', '.join(sorted(errors))})"
        return answer
