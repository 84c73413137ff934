"""The ``web`` section: the dashboard, API and public status page that ``llmpulse run`` serves."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmpulse.config.errors import ConfigError
from llmpulse.config.fields import Address, SecretReference, read_reference
from llmpulse.durations import Duration


class WebSettings(BaseModel):
    """The dashboard, API and public status page that ``llmpulse run`` serves."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    enabled: bool = True
    listen: Address = "127.0.0.1:8080"
    # Also serve the public status page alone on this address (no auth, nothing else).
    status_listen: Address | None = None
    # Required off loopback: a bearer token, or basic auth, each referenced from the environment.
    token: SecretReference = None
    username: str | None = None
    password: SecretReference = None
    # false: serve the UI and API off loopback without any credentials (an explicit opt-out).
    auth: bool = True
    # A browser's sign-in ends after this long without a request (each request restarts it).
    session_timeout: Duration = Field(
        default=12 * 3600.0, gt=0, le=365 * 86400.0, allow_inf_nan=False
    )
    title: str = "llmpulse"
    # Where users reach the dashboard (behind a proxy, say): alert messages link there.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=2000)

    @model_validator(mode="after")
    def _credentials_complete(self) -> WebSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("'username' and 'password' go together")
        return self


@dataclasses.dataclass(frozen=True, slots=True)
class WebConfig:
    """Resolved web settings: addresses split, credentials read from the environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    enabled: bool = True
    status_host: str | None = None
    status_port: int | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    auth: bool = True
    session_timeout: float = 12 * 3600.0
    title: str = "llmpulse"
    public_url: str | None = None

    def alert_url(self, fingerprint: str) -> str | None:
        """The dashboard's page of one alert, when ``public_url`` says where the dashboard is."""
        if self.public_url is None:
            return None
        return f"{self.public_url.rstrip('/')}/alerts#alert-{fingerprint}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.password) if s)

    @property
    def requires_auth(self) -> bool:
        """Credentials are checked when any are set, or off loopback unless opted out."""
        if not self.auth:
            return False
        return bool(self.token or self.password) or not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def resolve_web(settings: WebSettings, env: Mapping[str, str], where: str = "") -> WebConfig:
    """Resolve the web section; off loopback it must name credentials or opt out of auth."""
    secrets: dict[str, str | None] = {}
    for key in ("token", "password"):
        ref = getattr(settings, key)
        if ref is None:
            secrets[key] = None
            continue
        secrets[key] = read_reference(ref, env, f"{where}web.{key}")
    host, port = split_address(settings.listen)
    status_host, status_port = (
        split_address(settings.status_listen) if settings.status_listen else (None, None)
    )
    web = WebConfig(
        host=host,
        port=port,
        enabled=settings.enabled,
        status_host=status_host,
        status_port=status_port,
        token=secrets["token"],
        username=settings.username,
        password=secrets["password"],
        auth=settings.auth,
        session_timeout=settings.session_timeout,
        title=settings.title,
        public_url=settings.public_url,
    )
    check_credentials(web, where + "web.listen")
    return web


def check_credentials(web: WebConfig, where: str) -> None:
    if web.enabled and web.requires_auth and not (web.token or web.password):
        raise ConfigError(
            f"{where}: {web.host}:{web.port} is not a loopback address, so the dashboard needs "
            "credentials: set web.token (or web.username and web.password), or web.auth: false"
        )
