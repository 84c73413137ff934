"""The ``slos`` section: service level objectives, each a share of good results over a rolling
window, with the burn-rate alerts that guard its error budget (what counts as good, and the
budget arithmetic, are ``llmpulse.alerts.slo``'s).

The default alerts are the Google SRE workbook's multiwindow, multi-burn-rate alerts for a
30-day window (page at 14.4× over 1 h and 5 m, page at 6× over 6 h and 30 m, warn at 1× over
3 d and 6 h); another window scales their windows by window / 30 d, never below 5 m for a long
window and 1 m for a short one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from llmpulse.config.errors import ConfigError
from llmpulse.config.fields import read_share
from llmpulse.config.match import ResultMatch, Selection, resolve_match
from llmpulse.durations import Duration
from llmpulse.rules import Severity
from llmpulse.target import Target

DAY = 86400.0
DEFAULT_WINDOW = 30 * DAY
MIN_LONG_S = 300.0
MIN_SHORT_S = 60.0
MAX_WINDOW_S = 400 * DAY

Sli = Literal["availability", "correctness", "ttft", "latency"]
# SLIs that count events, with no threshold to meet.
UNTHRESHOLDED = ("availability", "correctness")
SloSource = Literal["probe", "traffic", "all"]


def _objective(value: Any) -> Any:
    """``99.5%`` or ``0.995``, strictly between 0 and 1."""
    share = read_share(value, ("99.5%", "0.995"))
    if not (math.isfinite(share) and 0 < share < 1):
        raise ValueError(
            f"must be strictly between 0 and 1 (or 0% and 100%), got {share!r}; "
            "write 99.5% or 0.995"
        )
    return share


Objective = Annotated[float, BeforeValidator(_objective)]


class BurnAlertConfig(BaseModel):
    """One burn-rate alert: active while the budget burns at ``burn_rate`` or faster over both
    the ``long`` and the ``short`` window."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    severity: Severity
    burn_rate: float = Field(gt=0)
    long: Duration
    short: Duration


class SloConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # One line (it is an alert's target in every notice), starting with a visible character.
    name: str = Field(min_length=1, max_length=200, pattern=r"^\S[^\n\r\t]*$")
    match: ResultMatch | None = None
    sli: Sli
    objective: Objective
    threshold: Duration | None = None
    window: Duration = DEFAULT_WINDOW
    source: SloSource = "all"
    alerts: list[BurnAlertConfig] | None = Field(default=None, min_length=1)


@dataclasses.dataclass(frozen=True, slots=True)
class BurnAlert:
    severity: Severity
    burn_rate: float
    long_s: float
    short_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class Slo:
    """A resolved SLO."""

    name: str
    sli: Sli
    objective: float  # a fraction, 0 < objective < 1
    window_s: float
    source: SloSource
    selection: Selection
    alerts: tuple[BurnAlert, ...]
    threshold_s: float | None = None  # ttft and latency
    # What the persisted counts were counted by: what selects and judges results. The
    # objective and the alerts may change without losing the history; these may not.
    definition: str = ""

    @property
    def window_label(self) -> str:
        return duration_label(self.window_s)

    @property
    def windows(self) -> tuple[float, ...]:
        """Every alert window, shortest first."""
        return tuple(sorted({w for a in self.alerts for w in (a.long_s, a.short_s)}))


# (severity, burn rate, long window, short window) for a 30-day SLO window.
DEFAULT_ALERTS = (
    BurnAlert(Severity.CRITICAL, 14.4, 3600.0, 300.0),
    BurnAlert(Severity.CRITICAL, 6.0, 6 * 3600.0, 1800.0),
    BurnAlert(Severity.WARNING, 1.0, 3 * DAY, 6 * 3600.0),
)


def default_alerts(window_s: float) -> tuple[BurnAlert, ...]:
    scale = window_s / DEFAULT_WINDOW
    return tuple(
        dataclasses.replace(
            a,
            long_s=max(MIN_LONG_S, round(a.long_s * scale / 60) * 60),
            short_s=max(MIN_SHORT_S, round(a.short_s * scale / 60) * 60),
        )
        for a in DEFAULT_ALERTS
    )


def duration_label(seconds: float) -> str:
    """``30d``, ``6h``, ``5m``, ``90s``: the largest unit that divides it."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def resolve_slos(
    slos: Sequence[SloConfig], targets: Sequence[Target], where: str = ""
) -> list[Slo]:
    names = {t.name for t in targets}
    seen: set[str] = set()
    out = []
    for i, s in enumerate(slos):
        path = f"{where}slos[{i}]"
        if s.name in seen:
            raise ConfigError(f"{path}.name: duplicate SLO name {s.name!r}")
        if s.name in names:
            raise ConfigError(f"{path}.name: {s.name!r} is a target's name; SLO alerts and "
                              "target alerts would share it")  # fmt: skip
        seen.add(s.name)
        # Counted per minute: a window is whole minutes, and one per minute of it is kept.
        if not MIN_LONG_S <= s.window <= MAX_WINDOW_S or s.window % 60:
            raise ConfigError(f"{path}.window: expected whole minutes from 5m to 400d")
        if s.sli in UNTHRESHOLDED and s.threshold is not None:
            raise ConfigError(f"{path}.threshold: not used by sli {s.sli}; remove it")
        if s.sli not in UNTHRESHOLDED and s.threshold is None:
            raise ConfigError(f"{path}.threshold: required for sli {s.sli} (e.g. 2s)")
        for j, a in enumerate(s.alerts or ()):
            for key, value in (("long", a.long), ("short", a.short)):
                if value % 60:
                    raise ConfigError(f"{path}.alerts[{j}].{key}: expected whole minutes")
            if a.short > a.long:
                raise ConfigError(f"{path}.alerts[{j}].short: must not be longer than long")
            if a.long > s.window:
                raise ConfigError(f"{path}.alerts[{j}].long: must not be longer than the window")
        selection = resolve_match(s.match, targets, f"{path}.match")
        if selection.targets is None and not names:
            raise ConfigError(f"{path}.match: the config has no target to select")
        # Every event bad burns at 1 / (1 - objective): an alert faster than that never fires.
        # A default one (14.4× at an objective under 93 %) is capped there, so a whole outage
        # over its windows still pages; one the config asks for is refused.
        ceiling = 1 / (1 - s.objective)
        for j, a in enumerate(s.alerts or ()):
            if a.burn_rate > ceiling:
                raise ConfigError(
                    f"{path}.alerts[{j}].burn_rate: at objective {s.objective:.6g} the budget "
                    f"burns at most {ceiling:.3g}× (every event bad), so a {a.burn_rate:g}× "
                    "alert could never fire"
                )
        alerts = (
            tuple(BurnAlert(a.severity, a.burn_rate, a.long, a.short) for a in s.alerts)
            if s.alerts
            else tuple(
                dataclasses.replace(a, burn_rate=min(a.burn_rate, ceiling))
                for a in default_alerts(s.window)
            )
        )
        definition = hashlib.sha256(
            repr((s.sli, s.threshold, s.source, s.match.model_dump() if s.match else None)).encode()
        ).hexdigest()[:16]
        out.append(
            Slo(s.name, s.sli, s.objective, s.window, s.source, selection, alerts, s.threshold,
                definition)
        )  # fmt: skip
    return out
