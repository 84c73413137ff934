"""The ``rules:`` section: overrides of the built-in rules by id, and ``custom`` rules (a metric
over a window of the results a ``match`` selects, per subject, against a threshold), resolved
into ``MetricRule``s that ``alerts.metric_rules`` evaluates."""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llmpulse.config.errors import ConfigError
from llmpulse.config.match import ResultMatch, Selection, resolve_match
from llmpulse.durations import Duration, DurationError, DurationOrZero, parse_duration
from llmpulse.rules import (
    DEFAULT_RULES,
    ENGINE_RULES,
    METRICS,
    MetricSpec,
    RuleOverride,
    RuleSpec,
    Severity,
    Unit,
    known_rules,
)
from llmpulse.target import Target

By = Literal["target", "provider", "model", "all"]
Op = Literal[">", ">=", "<", "<="]
# Custom rules judge a window of what the alert leader keeps in memory, refilled from the store
# when it starts: a day is the longest window that stays cheap to keep.
MAX_WINDOW_S = 86400.0
SUMMARY_FIELDS = ("value", "threshold", "window", "subject", "metric", "rule", "op", "samples")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


class CustomRuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    id: str
    metric: str
    match: ResultMatch | None = None
    by: By = "target"
    window: Duration = 300.0
    op: Op
    threshold: float | str
    for_: DurationOrZero = Field(default=0.0, alias="for")
    min_samples: int = Field(default=1, ge=1, le=100_000)
    severity: Severity = Severity.WARNING
    summary: str | None = Field(default=None, max_length=500)
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("expected 1 to 100 letters, digits, '_', '.' or '-'")
        if value in DEFAULT_RULES or value in ENGINE_RULES:
            raise ValueError(f"{value!r} is a built-in rule; choose another id")
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric; expected one of {', '.join(METRICS)}")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if value > MAX_WINDOW_S:
            raise ValueError("a custom rule's window is at most 24h")
        return value

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str | None) -> str | None:
        if value is not None:
            for _, name, spec, conversion in string.Formatter().parse(value):
                if name is not None and (name not in SUMMARY_FIELDS or spec or conversion):
                    raise ValueError(
                        f"unknown placeholder {{{name}}}; expected "
                        + ", ".join(f"{{{f}}}" for f in SUMMARY_FIELDS)
                    )
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | str, info: ValidationInfo) -> float | str:
        metric = info.data.get("metric")  # absent when the metric was refused
        return value if metric is None else parse_threshold(METRICS[metric], value)


def parse_threshold(metric: MetricSpec, value: float | str) -> float:
    """``value`` in ``metric``'s unit: a duration for seconds, a fraction or a percentage for
    shares, a plain number otherwise."""
    unit = metric.unit
    try:
        if unit is Unit.SECONDS:
            return parse_duration(value)
        if isinstance(value, str):
            text = value.strip()
            if unit is Unit.FRACTION and text.endswith("%"):
                number = float(text[:-1]) / 100
            elif unit is Unit.USD and text.startswith("$"):
                number = float(text[1:])
            else:
                number = float(text)
        else:
            number = float(value)
    except (DurationError, ValueError):
        raise ValueError(f"{metric.name} is {_EXPECTED[unit]}") from None
    if not 0 <= number < float("inf") or (unit is Unit.FRACTION and number > 1):
        raise ValueError(f"{metric.name} is {_EXPECTED[unit]}")
    return number


_EXPECTED = {
    Unit.SECONDS: "in seconds: expected a duration such as 4s or 250ms",
    Unit.FRACTION: "a fraction: expected a number from 0 to 1 such as 0.05, or a percentage "
    "such as 5%",
    Unit.TOKENS_PER_S: "in tokens/s: expected a number",
    Unit.TOKENS: "in tokens: expected a number",
    Unit.COUNT: "a count: expected a number",
    Unit.USD: "in US dollars: expected a number such as 5 or $5",
}


class RulesSection(BaseModel):
    """Built-in rules' overrides by id (``llmpulse.rules.RuleOverride``) beside ``custom``."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, RuleOverride] = Field(init=False)
    custom: list[CustomRuleConfig] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _known(self) -> RulesSection:
        known_rules(self.overrides)
        seen: set[str] = set()
        for rule in self.custom:
            if rule.id in seen:
                raise ValueError(f"custom rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    @property
    def overrides(self) -> dict[str, RuleOverride]:
        return dict(self.__pydantic_extra__ or {})


@dataclasses.dataclass(frozen=True, slots=True)
class MetricRule:
    """A resolved custom rule (or a built-in one of ``rules.METRIC_RULES``): ``spec`` holds
    what every rule has (id, severity, threshold, window, for, min_samples)."""

    spec: RuleSpec
    metric: MetricSpec
    selection: Selection
    by: By
    op: Op
    summary: str | None = None

    def breached(self, value: float) -> bool:
        t = self.spec.threshold
        match self.op:
            case ">":
                return value > t
            case ">=":
                return value >= t
            case "<":
                return value < t
            case "<=":
                return value <= t


def resolve_custom_rules(
    rules: Iterable[CustomRuleConfig], targets: list[Target], where: str
) -> tuple[MetricRule, ...]:
    out = []
    for i, rule in enumerate(rules):
        if not rule.enabled:
            continue
        path = f"rules.custom[{i}].match"
        try:
            selection = resolve_match(rule.match, targets, path)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
        assert isinstance(rule.threshold, float)  # parsed by _threshold
        spec = RuleSpec(
            rule.id,
            rule.severity,
            rule.threshold,
            min_samples=rule.min_samples,
            window_s=rule.window,
            for_s=rule.for_,
        )
        out.append(
            MetricRule(spec, METRICS[rule.metric], selection, rule.by, rule.op, rule.summary)
        )
    return tuple(out)
