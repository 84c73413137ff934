"""The ``notifiers`` section: each channel's settings, validated, references read.

The channels themselves are built from these by ``llmpulse.alerts.notifiers.build_notifiers``.

Each entry of the config's ``notifiers:`` list has a ``type`` (``webhook``, ``slack``,
``discord``, ``teams``, ``pagerduty``, ``email``, ``apprise``, ``alertmanager``, ``twilio``)
and an optional unique ``name`` (default: the type). Credentials are only referenced, as for
targets' ``api_key``:

- ``secret``, ``routing_key``, ``password``, ``account_sid`` and ``auth_token`` must be
  ``os.environ/NAME`` or ``${NAME}``; a value written into the file is refused.
- ``url``, ``webhook_url``, ``urls`` and ``api_url`` may be literal, but Slack, Discord and
  Teams webhook URLs and Apprise URLs embed their token: reference them from the environment
  too.
- Webhook and Alertmanager ``headers`` values may be references; a credential header's
  (``Authorization``, ...) must be one.

Errors raise ``ConfigError`` naming the key path (``notifiers[1].routing_key: ...``) and never
echo a value that may be a secret.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from llmpulse.config.alerting import RouteConfig
from llmpulse.config.errors import ConfigError, error_message, key_path
from llmpulse.config.fields import read_reference
from llmpulse.config.web import is_loopback
from llmpulse.durations import Duration
from llmpulse.secrets import env_var, is_credential_header, url_password

# PagerDuty's Events API v2.
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# Where Alertmanager's v2 API takes alerts, below its base URL.
ALERTMANAGER_ALERTS_PATH = "/api/v2/alerts"
# Twilio's REST API (its 2010-04-01 version serves Messages and Calls).
TWILIO_API_URL = "https://api.twilio.com"

# Matched whole (fullmatch) and in ASCII: "$" would allow a final line break, "\d" any digit.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")

_MUST_REFERENCE = (
    "must reference an environment variable as os.environ/NAME or ${NAME}; "
    "secrets are never written in the config file"
)


def _secret_reference(value: str) -> str:
    if env_var(value) is None:
        raise ValueError(_MUST_REFERENCE)
    return value


def _http_url_or_reference(value: str) -> str:
    if env_var(value) is None and not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL, or os.environ/NAME")
    return value


def _credential_headers(value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        if is_credential_header(name) and env_var(header) is None:
            raise ValueError(f"header {name!r} carries a credential: {_MUST_REFERENCE}")
    return value


def _e164(value: object) -> str:
    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise ValueError("expected an E.164 phone number: + and up to 15 digits, e.g. +14155550100")
    return value


def _one_or_more_numbers(value: object) -> object:
    # One number may be written without a list; its error then names ``to``, not ``to[0]``.
    return [_e164(value)] if isinstance(value, str) else value


SecretRef = Annotated[str, AfterValidator(_secret_reference)]
HttpUrlOrRef = Annotated[str, AfterValidator(_http_url_or_reference)]
# Extra request headers; a credential header (Authorization, x-api-key, ...) only by reference.
Headers = Annotated[dict[str, str], AfterValidator(_credential_headers)]
PhoneNumber = Annotated[str, AfterValidator(_e164)]


class _NotifierBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)


class WebhookConfig(_NotifierBase):
    """POSTs ``Notification.to_json()``; ``secret`` signs it (``X-Llmpulse-Signature``)."""

    type: Literal["webhook"]
    url: HttpUrlOrRef = Field(repr=False)
    secret: SecretRef | None = Field(default=None, repr=False)
    headers: Headers = Field(default_factory=dict, repr=False)


class SlackConfig(_NotifierBase):
    type: Literal["slack"]
    webhook_url: HttpUrlOrRef = Field(repr=False)


class DiscordConfig(_NotifierBase):
    type: Literal["discord"]
    webhook_url: HttpUrlOrRef = Field(repr=False)


class TeamsConfig(_NotifierBase):
    """A Teams Workflows webhook ("Post to a channel when a webhook request is received")."""

    type: Literal["teams"]
    webhook_url: HttpUrlOrRef = Field(repr=False)


class PagerDutyConfig(_NotifierBase):
    """``webhook_secret``: the signing secret of a PagerDuty V3 webhook subscription whose
    acknowledgements come back to llmpulse (``/api/v1/integrations/pagerduty``)."""

    type: Literal["pagerduty"]
    routing_key: SecretRef = Field(repr=False)
    url: HttpUrlOrRef = Field(default=PAGERDUTY_EVENTS_URL, repr=False)
    webhook_secret: SecretRef | None = Field(default=None, repr=False)


class EmailConfig(_NotifierBase):
    """SMTP. ``port`` defaults to 587 (STARTTLS), or 465 with ``ssl: true`` (implicit TLS).

    ``ca_file`` trusts a private CA; ``verify: false`` skips certificate checks (tests only).
    """

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: SecretRef | None = Field(default=None, repr=False)
    sender: str
    to: list[str] = Field(min_length=1)
    starttls: bool = True
    ssl: bool = False
    ca_file: str | None = None
    verify: bool = True

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("expected an email address")
        return value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        if not all("@" in address for address in value):
            raise ValueError("expected a list of email addresses")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailConfig:
        if self.ssl and self.starttls and "starttls" in self.model_fields_set:
            raise ValueError("'ssl' (implicit TLS) and 'starttls' exclude each other")
        if (self.username is None) != (self.password is None):
            raise ValueError("'username' and 'password' go together")
        return self


class AppriseConfig(_NotifierBase):
    """Any service Apprise supports; one notifier's ``urls`` are retried together."""

    type: Literal["apprise"]
    urls: list[str] = Field(min_length=1, repr=False)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if env_var(url) is None and "://" not in url:
                raise ValueError(f"urls[{index}]: expected an Apprise URL or os.environ/NAME")
        return value


class AlertmanagerConfig(_NotifierBase):
    """A Prometheus Alertmanager: ``url`` is its base URL (with the path prefix it is served
    under, if any); alerts go to ``{url}/api/v2/alerts``. A firing alert is re-sent every
    ``resend_interval`` and expires in Alertmanager after four intervals without one."""

    type: Literal["alertmanager"]
    url: HttpUrlOrRef = Field(repr=False)
    headers: Headers = Field(default_factory=dict, repr=False)
    resend_interval: Duration = 60.0


class TwilioConfig(_NotifierBase):
    """SMS (``mode: sms``) or a voice call (``mode: call``) to each ``to`` number from ``from``.

    ``account_sid`` and ``auth_token`` are both credentials. ``api_url`` is Twilio's; it is a
    setting only so that tests can point the channel at a local fake of Twilio: another https
    URL, or plain http on a loopback address, since the credentials go with every request.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["twilio"]
    mode: Literal["sms", "call"] = "sms"
    account_sid: SecretRef = Field(repr=False)
    auth_token: SecretRef = Field(repr=False)
    from_: PhoneNumber = Field(alias="from")
    to: Annotated[list[PhoneNumber], BeforeValidator(_one_or_more_numbers)] = Field(min_length=1)
    api_url: str = Field(default=TWILIO_API_URL, repr=False)

    @field_validator("api_url")
    @classmethod
    def _https_or_loopback(cls, value: str) -> str:
        parts = urlsplit(value)
        local = parts.scheme == "http" and is_loopback(parts.hostname or "")
        if not (parts.scheme == "https" and parts.hostname) and not local:
            raise ValueError("expected an https:// URL (or http:// on a loopback address, a fake)")
        return value


NotifierConfig = Annotated[
    WebhookConfig
    | SlackConfig
    | DiscordConfig
    | TeamsConfig
    | PagerDutyConfig
    | EmailConfig
    | AppriseConfig
    | AlertmanagerConfig
    | TwilioConfig,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[NotifierConfig] = TypeAdapter(NotifierConfig)
_TYPES = (
    "webhook", "slack", "discord", "teams", "pagerduty", "email", "apprise", "alertmanager",
    "twilio",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class NotifierSettings:
    """One channel's settings with every reference read from the environment."""

    config: NotifierConfig = dataclasses.field(repr=False)
    # Every value read from the environment, and the token part of every URL.
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def name(self) -> str:
        return self.config.name or self.config.type


def resolve_notifiers(
    configs: Sequence[NotifierConfig | Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> list[NotifierSettings]:
    """Validate (raw mappings from YAML are accepted) and read references; names are unique."""
    env = os.environ if env is None else env
    resolved: list[NotifierSettings] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(configs):
        where = f"notifiers[{index}]"
        cfg = raw if isinstance(raw, BaseModel) else _validate(raw, where)
        resolver = _Resolver(env, where)
        settings = NotifierSettings(_resolved(cfg, resolver), tuple(resolver.secrets))
        if settings.name in seen:
            raise ConfigError(
                f"{where}.name: duplicate notifier name {settings.name!r} (also "
                f"notifiers[{seen[settings.name]}]); give each a distinct 'name'"
            )
        seen[settings.name] = index
        resolved.append(settings)
    return resolved


def check_routes(
    routes: Sequence[RouteConfig] | None, configs: Sequence[NotifierConfig | Mapping[str, Any]]
) -> None:
    """Every notifier a route names is configured (by ``name``, which defaults to ``type``)."""
    names = [
        (c.name or c.type) if isinstance(c, BaseModel) else str(c.get("name") or c.get("type"))
        for c in configs
        if isinstance(c, BaseModel | Mapping)
    ]
    known = ", ".join(names) or "none"
    for i, route in enumerate(routes or ()):
        lists = [(f"alerting.routes[{i}].notify", route.notify)] + [
            (f"alerting.routes[{i}].escalate[{j}].notify", step.notify)
            for j, step in enumerate(route.escalate)
        ]
        for where, notify in lists:
            for k, name in enumerate(notify):
                if name not in names:
                    raise ConfigError(
                        f"{where}[{k}]: unknown notifier {name!r}; the notifiers are: {known}"
                    )


def _validate(raw: Mapping[str, Any], where: str) -> NotifierConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type'")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, where)) from None


def _format_errors(exc: ValidationError, where: str) -> str:
    types = ", ".join(_TYPES)
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if loc and loc[0] in _TYPES:
            loc = loc[1:]  # the discriminator's tag, not a key of the file
        path, message = key_path(loc, where), error_message(err)
        if err["type"] == "union_tag_not_found":
            path, message = f"{where}.type", f"required key is missing ({types})"
        elif err["type"] == "union_tag_invalid":
            path, message = f"{where}.type", f"unknown notifier type; expected one of {types}"
        # Values are never echoed: any key of a notifier may hold a credential.
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


class _Resolver:
    """Reads ``os.environ/NAME`` references; errors name the key, never the value."""

    def __init__(self, env: Mapping[str, str], where: str) -> None:
        self.env = env
        self.where = where
        # Every value read from the environment, and the token part of every URL.
        self.secrets: list[str] = []

    def __call__(self, key: str, value: str) -> str:
        resolved = read_reference(value, self.env, f"{self.where}.{key}")
        if env_var(value) is not None:  # read from the environment: a secret
            self.secrets.append(resolved)
        return resolved

    def url(self, key: str, value: str) -> str:
        resolved = self(key, value)
        if not resolved.startswith(("http://", "https://")):
            raise ConfigError(f"{self.where}.{key}: expected an http:// or https:// URL")
        # Webhook URLs carry their token in the path or query (Slack, Discord, Teams), or a
        # password before the host.
        parts = urlsplit(resolved)
        self.secrets.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        self.secrets += url_password(resolved)
        return resolved

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: self(f"headers.{k}", v) for k, v in headers.items()}


def _resolved(cfg: NotifierConfig, resolve: _Resolver) -> NotifierConfig:
    changes: dict[str, Any]
    match cfg:
        case WebhookConfig():
            changes = {
                "url": resolve.url("url", cfg.url),
                "secret": resolve("secret", cfg.secret) if cfg.secret is not None else None,
                "headers": resolve.headers(cfg.headers),
            }
        case AlertmanagerConfig():
            url = resolve.url("url", cfg.url)
            if url.rstrip("/").endswith(ALERTMANAGER_ALERTS_PATH):
                raise ConfigError(
                    f"{resolve.where}.url: expected Alertmanager's base URL (such as "
                    f"http://alertmanager:9093); llmpulse adds {ALERTMANAGER_ALERTS_PATH}"
                )
            changes = {"url": url, "headers": resolve.headers(cfg.headers)}
        case SlackConfig() | DiscordConfig() | TeamsConfig():
            changes = {"webhook_url": resolve.url("webhook_url", cfg.webhook_url)}
        case PagerDutyConfig():
            changes = {
                "routing_key": resolve("routing_key", cfg.routing_key),
                "url": resolve.url("url", cfg.url),
                "webhook_secret": (
                    resolve("webhook_secret", cfg.webhook_secret) if cfg.webhook_secret else None
                ),
            }
        case EmailConfig():
            changes = {"password": resolve("password", cfg.password) if cfg.password else None}
        case AppriseConfig():
            urls = [resolve(f"urls[{i}]", url) for i, url in enumerate(cfg.urls)]
            # Apprise URLs hold their tokens after the scheme (tgram://TOKEN/CHAT).
            resolve.secrets += [url.partition("://")[2] for url in urls]
            changes = {"urls": urls}
        case TwilioConfig():
            sid = resolve("account_sid", cfg.account_sid)
            if not _ACCOUNT_SID.fullmatch(sid):  # it is also a path segment of every request
                raise ConfigError(
                    f"{resolve.where}.account_sid: expected a Twilio Account SID "
                    "(AC and 32 hexadecimal digits)"
                )
            changes = {
                "account_sid": sid,
                "auth_token": resolve("auth_token", cfg.auth_token),
                "api_url": resolve.url("api_url", cfg.api_url),
            }
    # model_copy skips validation: the values read are secrets, not references.
    return cfg.model_copy(update=changes)
