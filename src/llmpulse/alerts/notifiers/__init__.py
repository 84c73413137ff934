"""Notification channels, one module each behind ``Notifier``, built from the config's
``notifiers`` section (``llmpulse.config.notifiers``) by ``build_notifiers``."""

from __future__ import annotations

from collections.abc import Sequence

from llmpulse.alerts.notifiers.alertmanager import AlertmanagerNotifier
from llmpulse.alerts.notifiers.base import DeliveryError, Notifier
from llmpulse.alerts.notifiers.discord import DiscordNotifier
from llmpulse.alerts.notifiers.email import EmailNotifier
from llmpulse.alerts.notifiers.pagerduty import PagerDutyNotifier
from llmpulse.alerts.notifiers.slack import SlackNotifier
from llmpulse.alerts.notifiers.teams import TeamsNotifier
from llmpulse.alerts.notifiers.twilio import TwilioNotifier
from llmpulse.alerts.notifiers.webhook import WebhookNotifier
from llmpulse.config.errors import ConfigError
from llmpulse.config.notifiers import (
    AlertmanagerConfig,
    AppriseConfig,
    DiscordConfig,
    EmailConfig,
    NotifierSettings,
    PagerDutyConfig,
    SlackConfig,
    TeamsConfig,
    TwilioConfig,
    WebhookConfig,
)

__all__ = ["DeliveryError", "Notifier", "build_notifiers"]


def build_notifiers(settings: Sequence[NotifierSettings], where: str = "") -> list[Notifier]:
    """One channel per entry; an Apprise URL Apprise cannot parse is a ConfigError, its path
    after ``where`` (the config file, as a config error names it)."""
    notifiers = []
    for index, entry in enumerate(settings):
        notifier = _build(entry, f"{where}notifiers[{index}]")
        notifier.secrets = entry.secrets
        notifiers.append(notifier)
    return notifiers


def _build(settings: NotifierSettings, where: str) -> Notifier:
    cfg, name = settings.config, settings.config.name
    match cfg:
        case WebhookConfig():
            return WebhookNotifier(cfg.url, name=name, secret=cfg.secret, headers=cfg.headers)
        case SlackConfig():
            return SlackNotifier(cfg.webhook_url, name=name)
        case DiscordConfig():
            return DiscordNotifier(cfg.webhook_url, name=name)
        case TeamsConfig():
            return TeamsNotifier(cfg.webhook_url, name=name)
        case PagerDutyConfig():
            return PagerDutyNotifier(cfg.routing_key, url=cfg.url, name=name)
        case AlertmanagerConfig():
            return AlertmanagerNotifier(
                cfg.url, name=name, headers=cfg.headers, resend_interval_s=cfg.resend_interval
            )
        case EmailConfig():
            return EmailNotifier(
                host=cfg.host,
                port=cfg.port or (465 if cfg.ssl else 587),
                sender=cfg.sender,
                to=cfg.to,
                name=name,
                username=cfg.username,
                password=cfg.password,
                starttls=cfg.starttls,
                ssl_tls=cfg.ssl,
                ca_file=cfg.ca_file,
                verify=cfg.verify,
            )
        case TwilioConfig():
            return TwilioNotifier(
                account_sid=cfg.account_sid,
                auth_token=cfg.auth_token,
                sender=cfg.from_,
                to=cfg.to,
                mode=cfg.mode,
                api_url=cfg.api_url,
                name=name,
            )
        case AppriseConfig():
            # Apprise is imported only when configured: it is the slowest import by far.
            from llmpulse.alerts.notifiers.apprise import AppriseNotifier

            try:
                return AppriseNotifier(cfg.urls, name=name)
            except ValueError as exc:
                raise ConfigError(f"{where}.{exc}") from None
    raise AssertionError(f"unhandled notifier config {type(cfg).__name__}")
