"""``failover_path_broken``, judged by the alert leader: per gateway failover path, whether its
latest drill (``gateway.drill``, ``source=drill`` results read back from the store) failed.

A path is named by its group and its deployments in the order the drill walks them
(``gateway.drill.failover_paths``); a drill result carries the deployments it passed over and
the one that answered, last, as its ``route``, and the run as its ``drill`` label. Within one
config a path is its group (its route's first deployment's) and the deployment that must
answer: results of a path the config no longer has are not judged, and its alert resolves
(``Alerting.retire_drill_paths``). The latest run of a path decides: it is broken while a
request of that run (streamed or not) failed, and passes once every request of a later run
answered. A result of an older run read after a newer one's changes nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from llmpulse.config.gateway import GatewayConfig
from llmpulse.gateway.drill import FailoverPath, failover_paths
from llmpulse.result import CheckKind, CheckResult, Source

# Every path of the config, for naming them: not the bound on what one run drills.
_ALL_PATHS = 100_000

PathKey = tuple[str, str]  # (group, the deployment that must answer)


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
        self._configured = gateway is not None
        self._group_of: dict[str, str] = {}
        self._paths: dict[PathKey, FailoverPath] = {}
        if gateway is not None:
            self._group_of = {d.name: d.group for d in gateway.deployments}
            for p in failover_paths(gateway, max_paths=_ALL_PATHS).paths:
                self._paths[p.group, p.target.name] = p
        self.latest: dict[PathKey, _Latest] = {}

    @property
    def subjects(self) -> set[str]:
        """The alert targets of every path of the config."""
        return {f"{p.group}: {p.label}" for p in self._paths.values()}

    def add(self, result: CheckResult) -> PathKey | None:
        """Take ``result`` if it is a drill's; the path it is of (None: not a drill result, one
        of a path the config does not have, or one of an older run than the path's latest)."""
        if result.source is not Source.DRILL or not result.route or result.drill is None:
            return None
        key = (self._group_of.get(result.route[0], result.route[0]), result.route[-1])
        if self._configured and key not in self._paths:
            return None  # drilled under an earlier config: its path is gone
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

    def verdict(self, key: PathKey) -> PathVerdict:
        latest = self.latest[key]
        group, deployment = key
        known = self._paths.get(key)
        # The drill's own order when the config has the path; else as recorded.
        names = known.names if known is not None else list(latest.answering.route)
        path = " → ".join(names)
        subject = f"{group}: {path}"
        labels = {"group": group, "path": path, "deployment": deployment}
        failed = latest.failed.get(False) or latest.failed.get(True)
        if failed is None:
            summary = f"failover path {subject} passed its drill ({latest.run})"
            return PathVerdict(subject, latest.answering.provider, summary, labels, None)
        how = "streamed" if failed.kind is CheckKind.STREAM else "non-streaming"
        summary = (
            f"failover path {subject} is broken: {deployment} failed the {how} drill request "
            f"({latest.run}): {failed.error_class}: {failed.error_message}"
        )
        return PathVerdict(subject, failed.provider, summary, labels, failed)
