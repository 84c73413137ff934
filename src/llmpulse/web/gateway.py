"""The gateway page's figures: traffic share, fallbacks, breaker events, incidents and drills.

Everything is counted in the database (``Store.route_counts``, ``fallback_buckets``, ...) and
only per-bucket counts reach Python, so a busy gateway's week of traffic costs a few thousand
rows, not millions. A request's *first choice* is ``route[0]``, the deployment that answered
it (or failed last) ``route[-1]``, the result's target; a *fallback* is a request whose two
differ (within its group or in a fallback group). Live drills (traffic sent with a drill
header) are forced down the fallback path on purpose: they are counted apart and are in no
other figure.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from llmpulse.config.gateway import GatewayConfig, Strategy
from llmpulse.result import CheckKind, Source
from llmpulse.secrets import Redactor
from llmpulse.store import ResultFilter
from llmpulse.store.base import FallbackBucket, Store
from llmpulse.web import schemas

MINUTE = 60
# A minute is "moved" when more than this share of its requests went to a fallback.
MOVED_SHARE = 0.5
MAX_INCIDENTS = 100  # the most recent, per response
MAX_BREAKER_EVENTS = 1000
DRILL_RESULTS = 500  # the newest drill results read for the table of latest drills
UNKNOWN_REASON = "unknown"
# A moved request with no fallback reason went straight to another deployment: its first
# choice was not tried (breaker open, cooling down).
NOT_TRIED = "not_tried"


def primaries(config: GatewayConfig | None) -> dict[str, str]:
    """Under priority routing (the default), each deployment -> the one of its group traffic
    goes to first while all are up: lowest ``order``, then the config's order. Empty under
    the other strategies, where no deployment is everyone's first."""
    if config is None or config.router.strategy is not Strategy.PRIORITY:
        return {}
    expected = {}
    for group in config.groups:
        ranked = sorted(
            enumerate(group.deployments),
            key=lambda p: (math.inf if p[1].order is None else p[1].order, p[0]),
        )
        if ranked:
            for d in group.deployments:
                expected[d.name] = ranked[0][1].name
    return expected


class Groups:
    """Which model group a deployment (by name) serves: the gateway config's, else its own
    name (a database read without the config still tells its primaries apart). ``expected``:
    each deployment of a priority-routed group -> the group's primary (``primaries``)."""

    def __init__(
        self, group_of: Mapping[str, str], expected: Mapping[str, str] | None = None
    ) -> None:
        self._group_of = dict(group_of)
        self.expected = dict(expected or {})
        self._members: dict[str, list[str]] = collections.defaultdict(list)
        for deployment, group in self._group_of.items():
            self._members[group].append(deployment)

    def of(self, deployment: str) -> str:
        return self._group_of.get(deployment, deployment)

    def members(self, group: str, seen: Iterable[str] = ()) -> list[str]:
        """The deployments of ``group``: configured, and ``seen`` in the data as its."""
        return list(dict.fromkeys([*self._members.get(group, [group]), *seen]))


@dataclasses.dataclass(slots=True)
class _Run:
    group: str
    firsts: set[str]
    start_ts: float
    last_bucket: int
    requests: int
    fallbacks: int


def incidents(
    store: Store, groups: Groups, start_ts: float, end_ts: float
) -> list[schemas.GatewayIncident]:
    """Periods in which a group's traffic was answered mostly by other deployments than the
    requests' first choices. Precisely, per model group, in minutes (UTC, aligned) of the window:

    - a request's first choice is its route's first deployment or, under priority routing,
      its group's primary (``primaries``): a request sent straight to a fallback because the
      primary's breaker was open moved too;
    - a minute is *moved* when more than ``MOVED_SHARE`` (half) of the group's requests in it
      (live drills aside) were answered by another deployment than their first choice;
    - an incident is a run of moved minutes; a minute without requests of the group neither
      breaks nor extends a run; one with requests that is not moved ends it;
    - T (``start_ts``) is the time of the first moved request in the run's first minute;
    - T' (``end_ts``) is the time of the earliest request answered by its first choice in the
      first minute with requests after the run (that minute is not moved, so it has one). No
      such minute yet: the incident is ongoing (T' is None);
    - X (``from``) is the first choice most of the run's moved requests left, Y (``to``) the
      deployment that answered most of them; ``requests`` and ``fallbacks`` count the group's
      requests in the run's minutes, ``reasons`` the moved ones by fallback reason
      (``not_tried``: the first choice was passed over, not tried).

    Runs starting before the window are cut at it: T is then the window's first moved request.
    """
    per_group: dict[str, dict[int, list[FallbackBucket]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for b in store.fallback_buckets(start_ts, end_ts, MINUTE, groups.expected):
        per_group[groups.of(b.first)][b.bucket].append(b)
    found: list[schemas.GatewayIncident] = []
    for group, minutes in per_group.items():
        moved = [
            (bucket, rows)
            for bucket, rows in sorted(minutes.items())
            if sum(r.fallbacks for r in rows) > MOVED_SHARE * sum(r.requests for r in rows)
        ]
        firsts = groups.members(group, (r.first for rows in minutes.values() for r in rows))
        run: _Run | None = None
        for i, (bucket, rows) in enumerate(moved):
            if run is None:
                run = _Run(group, set(), min(r.first_fallback_ts for r in rows), bucket, 0, 0)
            run.last_bucket = bucket
            run.firsts.update(r.first for r in rows)
            run.requests += sum(r.requests for r in rows)
            run.fallbacks += sum(r.fallbacks for r in rows)
            following = moved[i + 1][0] if i + 1 < len(moved) else None
            if following == bucket + MINUTE:
                continue  # the next minute is moved too
            back = store.first_choice_answer(bucket + MINUTE, end_ts, firsts, groups.expected)
            if following is not None and (back is None or back >= following):
                continue  # no minute with requests in between: the same run goes on
            found.append(_incident(store, run, back, firsts, groups.expected))
            run = None
    found.sort(key=lambda i: i.start_ts)
    return found[-MAX_INCIDENTS:]


def _incident(
    store: Store,
    run: _Run,
    back: float | None,
    firsts: Sequence[str],
    expected: Mapping[str, str],
) -> schemas.GatewayIncident:
    counts = store.fallback_counts(run.start_ts, run.last_bucket + MINUTE, firsts, expected)
    left: collections.Counter[str] = collections.Counter()
    went: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for (first, answered, reason), n in counts.items():
        left[first] += n
        went[answered] += n
        reasons[reason or NOT_TRIED] += n
    x = left.most_common(1)[0][0] if left else min(run.firsts)
    y = went.most_common(1)[0][0] if went else "?"
    summary = f"{run.group}: traffic moved from {x} to {y} at {_when(run.start_ts)}"
    summary += f", back at {_when(back)}" if back is not None else ", not back yet"
    return schemas.GatewayIncident(
        group=run.group,
        from_=x,
        to=y,
        start_ts=run.start_ts,
        end_ts=back,
        ongoing=back is None,
        requests=run.requests,
        fallbacks=run.fallbacks,
        reasons=dict(reasons.most_common()),
        summary=f"{summary} ({run.fallbacks} of {run.requests} requests moved)",
    )


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def page(
    store: Store,
    groups: Groups,
    window: schemas.GatewayWindow,
    window_s: int,
    step_s: int,
    now: float,
    redact: Redactor,
) -> schemas.Gateway:
    """The gateway page over the ``window_s`` before ``now``, charted in ``step_s`` buckets."""
    first_bucket = int(now - window_s) // step_s * step_s
    ts = list(range(first_bucket, int(now) + 1, step_s))[-(window_s // step_s) - 1 :]
    index = {t: i for i, t in enumerate(ts)}
    start = ts[0]
    n = len(ts)
    per_group: dict[str, schemas.GatewayGroup] = {}
    per_minute: dict[str, list[float]] = {}
    requests = fallbacks = live_drills = 0
    for c in store.route_counts(start, now, step_s):
        if c.live_drill:
            live_drills += c.requests
            continue
        i = index.get(c.bucket)
        if i is None:
            continue
        name = groups.of(c.first)
        group = per_group.get(name)
        if group is None:
            group = per_group[name] = schemas.GatewayGroup(
                group=name, requests=[0] * n, deployments={}, fallbacks=[0] * n
            )
        group.requests[i] += c.requests
        group.deployments.setdefault(c.answered, [0] * n)[i] += c.requests
        requests += c.requests
        if c.answered != c.first:
            group.fallbacks[i] += c.requests
            fallbacks += c.requests
            rate = per_minute.setdefault(c.fallback_reason or UNKNOWN_REASON, [0.0] * n)
            rate[i] += c.requests * MINUTE / step_s
    for group in per_group.values():
        group.deployments = dict(sorted(group.deployments.items()))
    events = [
        schemas.GatewayBreakerEvent(
            ts=e.ts,
            agent=e.agent,
            deployment=e.deployment,
            group=groups.of(e.deployment),
            state=e.state,
            reason=redact(e.reason) or "",
        )
        for e in store.breaker_events(start, now + 1, MAX_BREAKER_EVENTS)
    ]
    return schemas.Gateway(
        window=window,
        step_s=step_s,
        ts=ts,
        groups=sorted(per_group.values(), key=lambda g: g.group),
        fallbacks_per_minute=dict(sorted(per_minute.items())),
        requests=requests,
        fallbacks=fallbacks,
        live_drills=live_drills,
        breaker_events=events,
        incidents=incidents(store, groups, start, now + 1),
        drills=latest_drills(store, groups, redact),
    )


def latest_drills(store: Store, groups: Groups, redact: Redactor) -> list[schemas.GatewayDrill]:
    """The newest drill result (source=drill) of every path, streaming and not, by group and
    path, from the newest ``DRILL_RESULTS`` drill results."""
    latest: dict[tuple[tuple[str, ...], bool], schemas.GatewayDrill] = {}
    drills = store.latest_results(DRILL_RESULTS, where=ResultFilter(source=str(Source.DRILL)))
    for r in drills:
        path = tuple(r.route) or (r.target,)
        stream = r.kind is CheckKind.STREAM
        if (path, stream) in latest:
            continue
        latest[path, stream] = schemas.GatewayDrill(
            group=groups.of(path[0]),
            path=list(path),
            stream=stream,
            ok=r.ok,
            ts=r.timestamp.timestamp(),
            label=redact(r.drill),
            error_class=str(r.error_class) if r.error_class else None,
            error_message=redact(r.error_message),
        )
    return sorted(latest.values(), key=lambda d: (d.group, d.path, d.stream))
