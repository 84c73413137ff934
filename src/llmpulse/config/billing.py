"""Reconciliation with a provider's own bill: the admin key that reads its cost and usage
reports (``providers.NAME.admin_key``) and how the comparison judges (``reconciliation``).

Only OpenAI's and Anthropic's organization reports are read (``providers.billing``). The admin
key is a secret: referenced from the environment, never written in the file, and removed from
anything logged or stored (``Config.redactor``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from llmpulse.config.errors import ConfigError
from llmpulse.config.fields import read_reference
from llmpulse.config.keys import parse_fraction
from llmpulse.config.web import is_loopback
from llmpulse.durations import Duration, DurationOrZero

# The providers whose reports are read, and where their admin APIs live.
REPORT_URLS = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}
MAX_DAYS = 31  # both APIs answer at most 31 daily buckets a page


def _https_or_loopback(value: str | None) -> str | None:
    # The admin key goes with every request: only over TLS, or to a fake on this machine.
    if value is None:
        return None
    parts = urlsplit(value)
    local = parts.scheme == "http" and is_loopback(parts.hostname or "")
    if not (parts.scheme == "https" or local) or not parts.hostname:
        raise ValueError("expected an https:// URL (or http:// on a loopback address, a fake)")
    return value.rstrip("/")


class ReconciliationSettings(BaseModel):
    """``providers.NAME.reconciliation``: how the daily comparison judges."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # billing_drift when the day's totals differ by more than this share of the provider's
    # figure, and by at least min_usd (a few cents of probes are not a drift).
    threshold: Annotated[float, BeforeValidator(parse_fraction)] = 0.10
    min_usd: float = Field(default=1.0, ge=0)
    # How many complete UTC days back are reconciled (missed days caught up).
    days: int = Field(default=7, ge=1, le=MAX_DAYS)
    # How long after a day ends its reports are read: providers publish them with a delay
    # (Anthropic's within minutes; OpenAI's costs can take hours to settle).
    settle: DurationOrZero = 6 * 3600.0
    # First wait after a provider error; doubled on each failure up to an hour.
    retry: Duration = 60.0
    # Where the reports are read (tests point it at the simulator).
    base_url: Annotated[str | None, AfterValidator(_https_or_loopback)] = None


@dataclasses.dataclass(frozen=True, slots=True)
class BillingSource:
    """One provider whose own reports are read, its admin key resolved."""

    provider: str
    admin_key: str = dataclasses.field(repr=False)
    base_url: str
    threshold: float = 0.10
    min_usd: float = 1.0
    days: int = 7
    settle_s: float = 6 * 3600.0
    retry_s: float = 60.0


def resolve_billing(
    providers: Mapping[str, tuple[str | None, ReconciliationSettings]],
    env: Mapping[str, str],
    where: str = "",
) -> tuple[BillingSource, ...]:
    """``providers``: each provider's ``(admin_key reference, reconciliation settings)``."""
    out = []
    for name, (reference, settings) in sorted(providers.items()):
        path = f"{where}providers.{name}.admin_key"
        if reference is None:
            continue
        if name not in REPORT_URLS:
            raise ConfigError(
                f"{path}: reconciliation reads only {' and '.join(REPORT_URLS)} reports"
            )
        key = read_reference(reference, env, path)
        out.append(
            BillingSource(
                provider=name,
                admin_key=key,
                base_url=settings.base_url or REPORT_URLS[name],
                threshold=settings.threshold,
                min_usd=settings.min_usd,
                days=settings.days,
                settle_s=settings.settle,
                retry_s=settings.retry,
            )
        )
    return tuple(out)
