"""``failover_path_broken``, judged by the alert leader: per gateway failover path, whether its
latest drill (``gateway.drill``, ``source=drill`` results read back from the store) failed.

A path is named by its group and its deployments in the order the drill walks them
(``gateway.drill.failover_paths``); a drill result carries the deployments it passed over and
the one that answered, last, as its ``route``, and the run as its ``drill`` label. The latest
run of a path decides: it is broken while a request of that run (streamed or not) failed, and
passes once every request of a later run answered. A result of an older run read after a newer
one's changes nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from llmpulse.config.gateway import GatewayConfig
from llmpulse.gateway.drill import FailoverPath, drill_skip, failover_paths
from llmpulse.result import CheckKind, CheckResult, Source

# Every path of the config, for naming them: not the bound on what one run drills.
_ALL_PATHS = 100_000


@dataclasses.dataclass(slots=True)
class _Latest:
    run: str
    at: datetime
    answering: CheckResult  # any result of the run: its provider and target
    failed: dict[bool, CheckResult]  # by ``stream``: the run's failing requests


@dataclasses.dataclass(frozen=True, slots=True)
class PathVerdict:
    """What ``failover_path_broken`` says of one path now: ``failed`` is a failing drill
    request of its latest run, None when that run passed."""

    subject: str  # "group: a → b", the alert's target
    provider: str  # the path's answering deployment's
    summary: str
    labels: dict[str, str]
    failed: CheckResult | None


class DrillJudge:
    """The latest drill run of each path, from drill results as they are read back."""

    def __init__(self, gateway: GatewayConfig | None) -> None:
        self._group_of: dict[str, str] = {}
        self._paths: dict[tuple[str, str, frozenset[str]], FailoverPath] = {}
        if gateway is not None:
            self._group_of = {d.name: d.group for d in gateway.deployments}
            for p in failover_paths(gateway, max_paths=_ALL_PATHS).paths:
                # A drill's route holds every deployment it passed over: the whole of the
                # groups on the path, whichever come after its target.
                passed = drill_skip(gateway, p) | {p.target.name}
                self._paths[p.group, p.target.name, passed] = p
        self.latest: dict[tuple[str, ...], _Latest] = {}

    def add(self, result: CheckResult) -> tuple[str, ...] | None:
        """Take ``result`` if it is a drill's; the path it is of (None: not a drill result, or
        one of an older run than the path's latest)."""
        if result.source is not Source.DRILL or not result.route or result.drill is None:
            return None
        key = tuple(result.route)
        latest = self.latest.get(key)
        if latest is None or (latest.run != result.drill and result.timestamp >= latest.at):
            latest = self.latest[key] = _Latest(result.drill, result.timestamp, result, {})
        elif latest.run != result.drill:
            return None
        stream = result.kind is CheckKind.STREAM
        if result.ok:
            latest.failed.pop(stream, None)
        else:
            latest.failed[stream] = result
        return key

    def verdict(self, key: tuple[str, ...]) -> PathVerdict:
        latest = self.latest[key]
        group = self._group_of.get(key[0], key[0])
        known = self._paths.get((group, key[-1], frozenset(key)))
        # The drill's own order when the config still has the path; else as recorded.
        names = known.names if known is not None else list(key)
        path = " → ".join(names)
        subject = f"{group}: {path}"
        labels = {"group": group, "path": path, "deployment": key[-1]}
        failed = latest.failed.get(False) or latest.failed.get(True)
        if failed is None:
            summary = f"failover path {subject} passed its drill ({latest.run})"
            return PathVerdict(subject, latest.answering.provider, summary, labels, None)
        how = "streamed" if failed.kind is CheckKind.STREAM else "non-streaming"
        summary = (
            f"failover path {subject} is broken: {key[-1]} failed the {how} drill request "
            f"({latest.run}): {failed.error_class}: {failed.error_message}"
        )
        return PathVerdict(subject, failed.provider, summary, labels, failed)
