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
from llmpulse.store.base import Island, Store
from llmpulse.web import schemas

MINUTE = 60
# An incident: more than this share of the group's requests in it moved.
MOVED_SHARE = 0.5
# First-choice answers for less than this long between moved requests do not end an incident.
MERGE_GAP_S = 60.0
# Minutes with moved requests less than this apart are read together.
SPAN_GAP_S = 5 * 60
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
    start_ts: float
    moved: int = 0
    requests: int = 0
    gap: float | None = None  # the first not moved request after the last moved one
    lull: int = 0  # not moved requests since


def incidents(
    store: Store, groups: Groups, start_ts: float, end_ts: float
) -> list[schemas.GatewayIncident]:
    """Periods in which a group's traffic was answered mostly by other deployments than the
    requests' first choices. Precisely, per model group, over its requests in time order (live
    drills aside):

    - a request's first choice is its route's first deployment or, under priority routing,
      its group's primary (``primaries``): a request sent straight to a fallback because the
      primary's breaker was open is moved too. A request is *moved* when another deployment
      than its first choice answered it (or failed last);
    - an incident starts at a moved request (T) and takes in the moved requests after it; it
      ends at the first request answered by its first choice (T') that is followed by no moved
      request for ``MERGE_GAP_S`` (a minute): first-choice answers in a shorter lull belong
      to the incident (a half-open probe between failures). No such request yet: ongoing,
      T' is None;
    - it is reported when more than ``MOVED_SHARE`` (half) of the group's requests from T to
      T' (to its last moved request, while ongoing) were moved: a scattering of fallbacks
      among first-choice answers is no incident;
    - X (``from``) is the first choice most of its moved requests left, Y (``to``) the
      deployment that answered most of them; ``reasons`` counts the moved requests by fallback
      reason (``not_tried``: the first choice was passed over, not tried).

    Only requests in minutes with a moved request, and the minutes between those less than
    ``SPAN_GAP_S`` apart, are read (runs ranked in the database): a quiet week costs nothing.
    An incident that began before the window starts at its first moved request inside it.
    """
    minutes: dict[str, list[int]] = collections.defaultdict(list)
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for b in store.fallback_buckets(start_ts, end_ts, MINUTE, groups.expected):
        group = groups.of(b.first)
        if not minutes[group] or minutes[group][-1] != b.bucket:
            minutes[group].append(b.bucket)
        seen[group].add(b.first)
    found: list[schemas.GatewayIncident] = []
    for group, buckets in minutes.items():
        firsts = groups.members(group, sorted(seen[group]))
        islands: list[Island] = []
        for lo, hi in _spans(buckets):
            if islands and islands[-1].moved:
                # Between two spans the group may have been answered by its first choice.
                back = store.first_choice_answer(islands[-1].end_ts, lo, firsts, groups.expected)
                if back is not None:
                    islands.append(Island(False, back, back, 1))
            islands += store.route_islands(lo, hi, firsts, groups.expected)
        if islands and islands[-1].moved:
            back = store.first_choice_answer(islands[-1].end_ts, end_ts, firsts, groups.expected)
            if back is not None:
                islands.append(Island(False, back, back, 1))
        for start, back, moved, requests in _runs(islands):
            if moved > MOVED_SHARE * requests:
                found.append(
                    _incident(store, group, start, back, end_ts, moved, requests, firsts, groups)
                )
    found.sort(key=lambda i: i.start_ts)
    return found[-MAX_INCIDENTS:]


def _spans(buckets: Sequence[int]) -> list[tuple[int, int]]:
    """Minutes with a moved request, joined into ranges where less than ``SPAN_GAP_S`` apart."""
    spans: list[tuple[int, int]] = []
    for bucket in buckets:
        if spans and bucket - spans[-1][1] < SPAN_GAP_S:
            spans[-1] = (spans[-1][0], bucket + MINUTE)
        else:
            spans.append((bucket, bucket + MINUTE))
    return spans


def _runs(islands: Sequence[Island]) -> list[tuple[float, float | None, int, int]]:
    """Incidents as (T, T' or None, moved requests, requests from T to T'), from the runs."""
    out: list[tuple[float, float | None, int, int]] = []
    run: _Run | None = None
    for island in islands:
        if run is None:
            if island.moved:
                run = _Run(island.start_ts)
            else:
                continue
        if not island.moved:
            run.gap = island.start_ts if run.gap is None else run.gap
            run.lull += island.requests
            continue
        if run.gap is not None:
            if island.start_ts - run.gap >= MERGE_GAP_S:
                out.append((run.start_ts, run.gap, run.moved, run.requests))
                run = _Run(island.start_ts)
            else:
                run.requests += run.lull  # a lull inside the incident
                run.gap, run.lull = None, 0
        run.moved += island.requests
        run.requests += island.requests
    if run is not None:
        out.append((run.start_ts, run.gap, run.moved, run.requests))
    return out


def _incident(
    store: Store,
    group: str,
    start: float,
    back: float | None,
    end_ts: float,
    moved: int,
    requests: int,
    firsts: Sequence[str],
    groups: Groups,
) -> schemas.GatewayIncident:
    counts = store.fallback_counts(start, back or end_ts, firsts, groups.expected)
    left: collections.Counter[str] = collections.Counter()
    went: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for (first, answered, reason), n in counts.items():
        left[first] += n
        went[answered] += n
        reasons[reason or NOT_TRIED] += n
    x = left.most_common(1)[0][0] if left else firsts[0]
    y = went.most_common(1)[0][0] if went else "?"
    summary = f"{group}: traffic moved from {x} to {y} at {_when(start)}"
    summary += f", back at {_when(back)}" if back is not None else ", not back yet"
    return schemas.GatewayIncident(
        group=group,
        from_=x,
        to=y,
        start_ts=start,
        end_ts=back,
        ongoing=back is None,
        requests=requests,
        fallbacks=moved,
        reasons=dict(reasons.most_common()),
        summary=f"{summary} ({moved} of {requests} requests moved)",
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
