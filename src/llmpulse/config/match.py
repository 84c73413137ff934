"""Which results a custom rule or an SLO reads: ``match`` in the config, resolved against the
targets into a ``Selection`` that admits or refuses each result.

Target, provider and model globs are resolved once, at load, into the set of target names they
select; check globs into the check kinds and custom probe names they name (a kind selects the
custom probes of that kind too), source globs into sources. Region globs stay globs:
regions are whatever the agents say. A glob that selects nothing is a config error: it is a
typo far more often than a rule meant to watch nothing.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from llmpulse.config.errors import ConfigError
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.target import Target


def _globs(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# A glob, or a list of globs any of which may match.
Globs = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_globs), Field(min_length=1)
]


class ResultMatch(BaseModel):
    """Which results count; a key left out admits every result."""

    model_config = ConfigDict(extra="forbid")
    provider: Globs | None = None
    target: Globs | None = None
    model: Globs | None = None
    check: Globs | None = None
    source: Globs | None = None
    region: Globs | None = None


def _any(value: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, g) for g in globs)


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """A resolved ``ResultMatch``. None in a field admits every value of it."""

    targets: frozenset[str] | None = None
    checks: frozenset[str] | None = None  # check kinds and probe names
    sources: frozenset[str] | None = None
    regions: tuple[str, ...] | None = None  # globs; a result without a region is ""

    def admits(self, result: CheckResult) -> bool:
        return (
            (self.targets is None or result.target in self.targets)
            and (
                self.checks is None
                or str(result.kind) in self.checks
                or result.check in self.checks
            )
            and (self.sources is None or result.source.value in self.sources)
            and (self.regions is None or _any(result.region or "", self.regions))
        )

    def admits_target(self, name: str) -> bool:
        return self.targets is None or name in self.targets

    def describe(self) -> str:
        """The selection in a few words, for listings (``llmpulse check-config``)."""
        parts = []
        for label, values in (
            ("targets", self.targets),
            ("checks", self.checks),
            ("sources", self.sources),
            ("regions", self.regions),
        ):
            if values is not None:
                shown = sorted(values)
                more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
                parts.append(f"{label} {', '.join(shown[:5])}{more}")
        return "; ".join(parts) or "every result"


ALL = Selection()


def resolve_match(match: ResultMatch | None, targets: Iterable[Target], path: str) -> Selection:
    """``match`` against the config's ``targets``; ConfigError naming ``path`` when a glob
    selects nothing."""
    if match is None:
        return ALL
    targets = list(targets)
    selected: frozenset[str] | None = None
    if match.provider or match.target or match.model:
        names = []
        for t in targets:
            if (
                (match.provider is None or _any(t.provider, match.provider))
                and (match.target is None or _any(t.name, match.target))
                and (match.model is None or _any(t.model, match.model))
            ):
                names.append(t.name)
        if not names:
            raise ConfigError(f"{path}: selects no target of the config")
        selected = frozenset(names)
    return Selection(
        targets=selected,
        checks=_enum(match.check, _check_names(targets, selected), f"{path}.check"),
        sources=_enum(match.source, [s.value for s in Source], f"{path}.source"),
        regions=tuple(match.region) if match.region else None,
    )


def _check_names(targets: list[Target], selected: frozenset[str] | None) -> list[str]:
    """The check kinds, then the custom probes' names of the selected targets."""
    probes = (p.name for t in targets if selected is None or t.name in selected for p in t.probes)
    return list(dict.fromkeys([*(c.value for c in CheckKind), *sorted(probes)]))


def _enum(globs: list[str] | None, values: list[str], path: str) -> frozenset[str] | None:
    if globs is None:
        return None
    chosen = frozenset(v for v in values if _any(v, globs))
    if not chosen:
        more = f" and {len(values) - 20} more" if len(values) > 20 else ""
        raise ConfigError(f"{path}: matches none of {', '.join(values[:20])}{more}")
    return chosen
