"""Gateway keys, teams and budgets: who may call the gateway, which model groups they may use,
how fast, and how much they may spend (``gateway.keys`` and ``teams``).

A key is known by the SHA-256 digest of its text: keys written in the config are hashed at
load, keys created at run time (``llmpulse keys create``) are stored only as digests, and the
gateway looks a presented key up by its digest, so it never compares or keeps key text.
"""

from __future__ import annotations

import calendar
import dataclasses
import enum
import fnmatch
import hashlib
import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    field_validator,
)

from llmpulse.config.errors import ConfigError
from llmpulse.config.fields import SecretReference, read_share

DAY_S = 86_400.0
MAX_NAME = 256  # a model group name in a key's models (as gateway.max_model_name_length)


class Period(enum.StrEnum):
    """A budget's period: ``1d``, ``7d`` and ``30d`` roll; ``1mo`` is the UTC calendar month."""

    DAY = "1d"
    WEEK = "7d"
    DAYS_30 = "30d"
    MONTH = "1mo"

    @property
    def rolling(self) -> bool:
        return self is not Period.MONTH

    @property
    def seconds(self) -> float:
        """Its length; for ``1mo`` the longest month's (forecasts use ``end`` instead)."""
        return {"1d": 1, "7d": 7, "30d": 30, "1mo": 31}[self.value] * DAY_S

    def start(self, now: float) -> float:
        """Where the period holding ``now`` starts: a rolling window's far edge, or the first
        of the month at 00:00 UTC."""
        if self.rolling:
            return now - self.seconds
        at = datetime.fromtimestamp(now, UTC)
        return datetime(at.year, at.month, 1, tzinfo=UTC).timestamp()

    def end(self, now: float) -> float:
        """When the period holding ``now`` resets: the first of the next month for ``1mo``; a
        rolling window never resets as a whole, so its spend ages out from ``now`` on."""
        if self.rolling:
            return now
        at = datetime.fromtimestamp(now, UTC)
        days = calendar.monthrange(at.year, at.month)[1]
        return self.start(now) + days * DAY_S


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """``max_usd`` per ``period``; ``warn_at`` the fraction of it that warns (None: never)."""

    max_usd: float
    period: Period
    warn_at: float | None = 0.8


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayKey:
    """One key clients present to the gateway, and what it may do."""

    name: str
    digest: str = dataclasses.field(repr=False)  # SHA-256 hex of the key's text
    team: str | None = None
    models: tuple[str, ...] = ()  # model-group globs it may use; empty: every group
    rpm: int | None = None
    tpm: int | None = None
    budget: Budget | None = None
    # general_settings.master_key: it also administers keys (/api/v1/keys).
    master: bool = False
    # May send live drills (x-llmpulse-drill): forcing its own requests down their fallbacks.
    drill: bool = False
    # Its text, for keys written in the config (the redactor must know it); None at run time.
    secret: str | None = dataclasses.field(default=None, repr=False, compare=False)

    def allows(self, *names: str) -> bool:
        """Whether a request may use a model known by ``names``: the name requested (a group,
        an alias, or a model a wildcard group serves) and the group it resolves to. Either
        allowed is enough: a key given an alias may use it, one given a group its aliases."""
        return not self.models or any(
            fnmatch.fnmatchcase(name, glob) for name in names for glob in self.models
        )

    @property
    def may_drill(self) -> bool:
        """Whether its requests may be live drills: ``drill: true``, or the master key."""
        return self.drill or self.master


@dataclasses.dataclass(frozen=True, slots=True)
class Team:
    name: str
    budget: Budget | None = None


def key_digest(key: str) -> str:
    """The digest a key is known by. Keys are long random strings, so one unsalted SHA-256 is
    enough (as LiteLLM's hashed tokens): nothing short enough to guess needs stretching."""
    return hashlib.sha256(key.encode()).hexdigest()


def plain_key_name(digest: str) -> str:
    """The name of a key written as a plain string (``gateway.keys: [os.environ/K]``): stable
    across restarts and reorderings, and telling nothing of the key."""
    return f"key-{digest[:8]}"


# ---- the sections as written ------------------------------------------------------------------


def parse_fraction(value: Any) -> float:
    """``80%`` or ``0.8``: a share above 0 and at most 1."""
    share = read_share(value, ("80%", "0.8"))
    if not (math.isfinite(share) and 0 < share <= 1):
        raise ValueError(f"must be above 0 and at most 1 (100%), got {share!r}")
    return share


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    max_usd: float = Field(gt=0)
    period: Period = Period.DAYS_30
    warn_at: Annotated[float, BeforeValidator(parse_fraction)] | None = 0.8

    def resolve(self) -> Budget:
        return Budget(self.max_usd, self.period, self.warn_at)


class KeyConfig(BaseModel):
    """One entry of ``gateway.keys`` written as a mapping. Without ``key`` it gives the team,
    models, limits and budget of the key of that name created at run time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")
    key: SecretReference = None
    team: str | None = Field(default=None, min_length=1, max_length=128)
    models: list[str] = Field(default_factory=list, max_length=1000)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    budget: BudgetConfig | None = None
    # Strict: a permission is granted by true itself, never by a string or number read as one.
    drill: StrictBool = False

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: list[str]) -> list[str]:
        if any(not m.strip() for m in value):
            raise ValueError("a model group name is empty")
        if any(len(m) > MAX_NAME or not m.isprintable() for m in value):
            raise ValueError(f"a model group name is unprintable or over {MAX_NAME} characters")
        return value

    @field_validator("team")
    @classmethod
    def _printable_team(cls, value: str | None) -> str | None:
        return _printable(value)


class TeamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=128)
    budget: BudgetConfig | None = None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        return _printable(value) or value

    def resolve(self) -> Team:
        return Team(self.name, self.budget.resolve() if self.budget else None)


def _printable(name: str | None) -> str | None:
    """A team's name is shown in errors, logs and metric labels: one printable line."""
    if name is not None and not name.isprintable():
        raise ValueError("must be printable: no line breaks or control characters")
    return name


def _key_form(value: Any) -> str:
    return "(key mapping)" if isinstance(value, dict) else "(plain key)"


# An entry of ``gateway.keys``: a plain reference, or a mapping. Discriminated, so an error
# in either names its path once (not once per form it failed to be).
KeyEntry = Annotated[
    Annotated[SecretReference, Tag("(plain key)")] | Annotated[KeyConfig, Tag("(key mapping)")],
    Discriminator(_key_form),
]


def resolve_key(entry: KeyConfig, secret: str | None) -> GatewayKey:
    """A mapping entry of ``gateway.keys``, its key read (None: a run-time key's policy)."""
    return GatewayKey(
        name=entry.name,
        digest=key_digest(secret) if secret else "",
        team=entry.team,
        models=tuple(entry.models),
        rpm=entry.rpm,
        tpm=entry.tpm,
        budget=entry.budget.resolve() if entry.budget else None,
        drill=entry.drill,
        secret=secret,
    )


def resolve_teams(entries: list[TeamConfig], where: str = "") -> tuple[Team, ...]:
    names = [t.name for t in entries]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{where}teams[{i}].name: {name!r} is declared twice")
    return tuple(t.resolve() for t in entries)
