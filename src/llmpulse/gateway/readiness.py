"""Failover readiness: could each model group's fallbacks take its traffic now? Judged without
a token, from what is stored (models checks, probe and traffic results with their rate-limit
headers, features and usage) and the gateway's breaker decisions.

A group's *primary* is its first deployment in the gateway's order; its *fallbacks* are the
group's other deployments, then the deployments of its fallback groups, as the gateway would
go to them: the failover paths drills go down (``drill.failover_paths``, the one definition of
that order). The load to absorb is the traffic that entered the group (the first of its route
is one of the group's deployments: the primary, or another while the primary's breaker is open
or when the strategy spreads the load): the features of the last hour, its p99 prompt, and its
rate over the last five minutes; a deployment of the group is asked only for the part it does
not carry already. Each fallback is judged on five questions:

- key and model: no ``missing_key``; the latest ``models`` check neither refused the key nor
  found the model unlisted, and the latest call was not refused (``auth``);
- parameters: every feature of the group's traffic passes ``proxy.unsupported``, the table
  routing uses (protocol, model, ``model_info`` capability flags); ``drop_params`` would drop
  it instead (at risk);
- context window: its window (``model_info.max_input_tokens`` or the catalogue's) holds the
  group's p99 prompt;
- rate-limit headroom: what its latest rate-limit headers (at most ``HEADERS_MAX_AGE_S`` old)
  leave until their reset (past it, the window has refilled), and its ``rpm``/``tpm`` and the
  headers' limits minus its own current load, both exceed the group's rate. Limits are read as
  per minute (OpenAI's and Anthropic's requests and tokens per minute); the tokens compared
  are input + output;
- breaker: from the gateway's shared state in Redis (``gateway.redis_url``); otherwise
  inferred from its latest call (probe or traffic): an outage class means the breaker is
  likely open; a rate limit or an exhausted quota, a cool-down until its retry-after (else the
  breaker's default) has passed. A refused key is the first question's.

A fallback is ``not_ready`` when any answer is no, ``at_risk`` when none is no but one is
unknown (no traffic to size the load, no headers or limits, no models check, no call yet,
an unknown context window or prompt size) or it would drop a parameter, ``ready`` otherwise.
A group is ``ready`` with at least one ready fallback, ``at_risk`` with none ready but one at
risk, and ``not_ready`` when every fallback is not ready, or it has none.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from llmpulse import catalog
from llmpulse.config.gateway import Deployment, GatewayConfig
from llmpulse.errors import ErrorClass
from llmpulse.gateway import drill, proxy
from llmpulse.gateway.breaker import BreakerConfig
from llmpulse.gateway.translate import params
from llmpulse.result import CheckKind, CheckResult, RateLimit
from llmpulse.store.base import EntryTraffic, ResultFilter, Store

if TYPE_CHECKING:
    from llmpulse.gateway.shared import Hold

TRAFFIC_WINDOW_S = 3600.0  # features and prompt sizes of the group's traffic
RATE_WINDOW_S = 300.0  # the current request and token rates
HEADERS_MAX_AGE_S = 900.0  # older rate-limit headers say nothing of the headroom now
LATEST_RESULTS = 20  # of each deployment, newest first: headers and the latest call
NAMED = 3  # fallbacks a group's reason names
_COOLDOWNS = BreakerConfig()  # caller-limit cool-downs: router settings do not change them


class Status(enum.StrEnum):
    READY = "ready"
    AT_RISK = "at_risk"
    NOT_READY = "not_ready"


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """The group's traffic, wherever it entered: what a fallback must take."""

    requests: int  # over TRAFFIC_WINDOW_S
    rpm: float
    tpm: float
    prompt_p99: int | None
    features: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Fallback:
    name: str
    group: str
    status: Status
    reasons: tuple[str, ...]  # why it is not ready or at risk; empty when ready
    context_window: int | None
    # Per minute, what it could still take (None: unknown), and its own current load.
    headroom_rpm: float | None
    headroom_tpm: float | None
    own_rpm: float
    own_tpm: float
    breaker: str  # closed, open, cooling, unknown
    breaker_inferred: bool


@dataclasses.dataclass(frozen=True, slots=True)
class GroupReadiness:
    group: str
    status: Status
    reason: str
    primary: str
    load: Load
    fallbacks: tuple[Fallback, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What the judgement reads, read once (``read_facts``)."""

    now: float
    traffic: Mapping[str, EntryTraffic]  # by the deployment the traffic entered at
    latest: Mapping[str, Sequence[CheckResult]]  # by deployment name, newest first
    models: Mapping[str, CheckResult]  # the latest models check, by deployment name
    paths: Sequence[tuple[Deployment, list[Deployment]]]  # ``paths(config)``: what is judged
    # By deployment id; None when the shared state was not read (``breaker_note`` says why).
    holds: Mapping[str, Hold] | None = None
    breaker_note: str = "no gateway.redis_url"
    keys_known: bool = True  # the config was read with the gateway's keys (``secrets_read``)


def paths(config: GatewayConfig) -> list[tuple[Deployment, list[Deployment]]]:
    """Each concrete group's primary and its fallbacks, in the gateway's order: the failover
    paths drills go down (``drill.failover_paths``, the one definition), by their targets."""
    out: dict[str, tuple[Deployment, list[Deployment]]] = {}
    for path in drill.failover_paths(config, max_paths=sys.maxsize).paths:
        if path.group in out:
            out[path.group][1].append(path.target)
        else:
            out[path.group] = (path.target, [])
    return list(out.values())


def read_facts(config: GatewayConfig, store: Store, now: float | None = None) -> Facts:
    """Everything ``judge`` needs, from bounded windows: a query for the traffic of the last
    hour by entry, two per fallback (its latest results, its latest models check), and the
    breaker decisions in Redis when the gateway shares them."""
    now = time.time() if now is None else now
    traffic = store.traffic_by_entry(now - TRAFFIC_WINDOW_S, now + 1, now - RATE_WINDOW_S)
    walked = paths(config)
    names = dict.fromkeys(f.name for _, fallbacks in walked for f in fallbacks)
    latest = {n: store.latest_results(LATEST_RESULTS, where=ResultFilter(target=n)) for n in names}
    models = {}
    for name in names:
        found = store.latest_results(1, where=ResultFilter(target=name, check=CheckKind.MODELS))
        if found:
            models[name] = found[0]
    holds, note = _holds(config)
    return Facts(now, traffic, latest, models, walked, holds, note, config.secrets_read)


def _holds(config: GatewayConfig) -> tuple[dict[str, Hold] | None, str]:
    url = config.settings.redis_url
    if not config.secrets_read:
        return None, "gateway.redis_url is not read where only the web UI is served"
    if url is None:
        return None, "no gateway.redis_url"
    # Redis loads only when a gateway shares state through it.
    from redis.exceptions import RedisError

    from llmpulse.gateway.shared import read_holds

    try:
        return read_holds(url, config.settings.redis_prefix), ""
    except (RedisError, OSError) as exc:
        return None, f"Redis unreachable: {type(exc).__name__}"
    except ValueError:  # not what a gateway writes there
        return None, "Redis holds an unreadable breaker state"


def judge(facts: Facts) -> list[GroupReadiness]:
    """Every concrete group's readiness (see the module's docstring), of the config the facts
    were read for."""
    out = []
    for primary, fallbacks in facts.paths:
        own = [primary, *(f for f in fallbacks if f.group == primary.group)]
        load = _load([facts.traffic[d.name] for d in own if d.name in facts.traffic])
        judged = tuple(_fallback(f, load, facts, f.group == primary.group) for f in fallbacks)
        status, reason = _group(judged)
        out.append(GroupReadiness(primary.group, status, reason, primary.name, load, judged))
    return out


def _load(entries: Sequence[EntryTraffic]) -> Load:
    """The group's traffic, wherever it entered: at the primary, or at another of its
    deployments when the primary's breaker is open or the strategy spreads the load. Per-entry
    p99s do not merge: the largest stands for the group's."""
    per_minute = RATE_WINDOW_S / 60
    prompts = [e.prompt_p99 for e in entries if e.prompt_p99 is not None]
    return Load(
        sum(e.requests for e in entries),
        sum(e.recent_requests for e in entries) / per_minute,
        sum(e.recent_tokens for e in entries) / per_minute,
        max(prompts, default=None),
        tuple(sorted({f for e in entries for f in e.features})),
    )


def _group(fallbacks: Sequence[Fallback]) -> tuple[Status, str]:
    if not fallbacks:
        return Status.NOT_READY, "no fallback: one deployment and no fallback group it reaches"
    ready = [f for f in fallbacks if f.status is Status.READY]
    if ready:
        return Status.READY, f"{len(ready)} of {len(fallbacks)} fallbacks ready ({ready[0].name})"
    risky = [f for f in fallbacks if f.status is Status.AT_RISK]
    if risky:
        return Status.AT_RISK, "no fallback known ready: " + _said(risky)
    return Status.NOT_READY, "no fallback could take the traffic: " + _said(fallbacks)


def _said(fallbacks: Sequence[Fallback]) -> str:
    # The alert's summary too: a long list of fallbacks is cut, the API has each in full.
    said = "; ".join(f"{f.name}: {', '.join(f.reasons)}" for f in fallbacks[:NAMED])
    return said + (f"; and {len(fallbacks) - NAMED} more" if len(fallbacks) > NAMED else "")


class _Verdict:
    def __init__(self) -> None:
        self.no: list[str] = []
        self.unknown: list[str] = []


def _fallback(d: Deployment, load: Load, facts: Facts, in_group: bool) -> Fallback:
    v = _Verdict()
    latest = facts.latest.get(d.name, ())
    calls = [r for r in latest if r.kind in (CheckKind.INFERENCE, CheckKind.STREAM)]
    _key(d, facts.models.get(d.name), calls[0] if calls else None, facts.keys_known, v)
    target = d.to_target()
    if load.requests == 0:
        v.unknown.append("no traffic into the group in the last hour: its load is unknown")
    _features(d, target.model, load, v)
    window = target.context_window or catalog.context_window(target)
    if window is None:
        v.unknown.append("context window unknown (set model_info.max_input_tokens)")
    elif load.prompt_p99 is None:
        if load.requests:
            v.unknown.append("the group's prompt sizes are unknown: no token counts stored")
    elif load.prompt_p99 > window:
        v.no.append(f"context window {window} tokens < the group's p99 prompt {load.prompt_p99}")
    own = facts.traffic.get(d.name)
    per_minute = RATE_WINDOW_S / 60
    own_rpm = own.recent_requests / per_minute if own else 0.0
    own_tpm = own.recent_tokens / per_minute if own else 0.0
    # A deployment of the group already carries its own part of the group's load.
    need_rpm = max(0.0, load.rpm - own_rpm) if in_group else load.rpm
    need_tpm = max(0.0, load.tpm - own_tpm) if in_group else load.tpm
    rl = _headers(latest, facts.now) or RateLimit()
    rpm = _headroom(d.rpm, rl.requests_limit, rl.requests_remaining, own_rpm)
    tpm = _headroom(d.tpm, rl.tokens_limit, rl.tokens_remaining, own_tpm)
    if rpm is None and tpm is None:
        v.unknown.append(
            "rate-limit headroom unknown: no rate-limit headers in the last "
            f"{HEADERS_MAX_AGE_S / 60:.0f} min and no rpm/tpm set"
        )
    if rpm is not None and load.requests and rpm < need_rpm:
        v.no.append(
            f"rate limit: room for {rpm:.0f} more requests/min, the group sends {need_rpm:.0f}"
        )
    if tpm is not None and load.requests and tpm < need_tpm:
        v.no.append(
            f"rate limit: room for {tpm:.0f} more tokens/min, the group uses {need_tpm:.0f}"
        )
    breaker, inferred = _breaker(d, calls[0] if calls else None, facts, v)
    status = Status.NOT_READY if v.no else Status.AT_RISK if v.unknown else Status.READY
    return Fallback(
        d.name, d.group, status, tuple(v.no + v.unknown), window,
        rpm, tpm, own_rpm, own_tpm, breaker, inferred,
    )  # fmt: skip


def _key(
    d: Deployment,
    models: CheckResult | None,
    call: CheckResult | None,
    keys_known: bool,
    v: _Verdict,
) -> None:
    # Without the keys (a web-only host) only the stored results say: a deployment without a
    # key has its probes and requests answered auth there.
    if d.missing_key is not None and keys_known:
        v.no.append(f"no key: {d.missing_key}")
        return
    if call is not None and call.error_class is ErrorClass.AUTH:
        v.no.append(f"key refused by its latest call ({_at(call)})")
    elif models is None:
        v.unknown.append("key and model unchecked: no models check stored")
    elif models.error_class is ErrorClass.AUTH:
        v.no.append(f"key refused by the models check ({_at(models)})")
    elif models.model_listed is False:
        v.no.append(f"model {models.model} not listed by the provider ({_at(models)})")
    elif not models.ok:
        v.unknown.append(f"models check failed: {models.error_class} ({_at(models)})")


def _features(d: Deployment, model: str, load: Load, v: _Verdict) -> None:
    for feature in load.features:
        missing = proxy.unsupported(d, params.example(feature), model)
        if not missing:
            continue
        declared = [f for f in d.lacks if feature in params.CAPABILITIES.get(f, ())]
        why = f"model_info {declared[0]}: false" if declared else f"{d.protocol} {model}"
        if d.drop_params and not params.KEPT.intersection(missing):
            v.unknown.append(f"would drop {feature} (drop_params; {why})")
        else:
            v.no.append(f"cannot take {feature}, which the group's traffic uses ({why})")


def _headers(latest: Sequence[CheckResult], now: float) -> RateLimit | None:
    """The newest rate-limit headers that still say something of now: at most
    ``HEADERS_MAX_AGE_S`` old, and once past their reset (``reset_s``, the most used
    dimension's) the window has refilled: what they said remained no longer holds, only the
    limits do."""
    for r in latest:
        if r.ratelimit is None:
            continue
        at = r.timestamp.timestamp()
        if now - at > HEADERS_MAX_AGE_S:
            return None  # newest first: the rest are older still
        rl = r.ratelimit
        if rl.reset_s is not None and at + rl.reset_s <= now:
            return dataclasses.replace(rl, requests_remaining=None, tokens_remaining=None)
        return rl
    return None


def _headroom(
    configured: int | None, limit: int | None, remaining: int | None, own: float
) -> float | None:
    """What more a deployment can take per minute: the least of its ``rpm``/``tpm`` and the
    provider's limit less its own load, and what the headers left; None when nothing says."""
    room = [float(x) - own for x in (configured, limit) if x is not None]
    if remaining is not None:
        room.append(float(remaining))
    return max(0.0, min(room)) if room else None


def _breaker(
    d: Deployment, call: CheckResult | None, facts: Facts, v: _Verdict
) -> tuple[str, bool]:
    if facts.holds is not None:
        hold = facts.holds.get(d.id)
        if hold is not None and hold.open_until > facts.now:
            v.no.append(f"breaker open until {_clock(hold.open_until)} (shared state)")
            return "open", False
        if hold is not None and hold.cool_until > facts.now:
            why = f" after {hold.reason}" if hold.reason else ""
            v.no.append(f"cooling down{why} until {_clock(hold.cool_until)} (shared state)")
            return "cooling", False
        return "closed", False
    note = f"inferred, {facts.breaker_note}"
    if call is None:
        v.unknown.append(f"breaker unknown ({note}): no probe or traffic result yet")
        return "unknown", True
    error = call.error_class
    if error is not None and error.is_outage:
        v.no.append(f"breaker likely open ({note}): its latest call failed, {error} ({_at(call)})")
        return "open", True
    if error is not None and error.is_caller_limit:
        # The cool-down that answer set, as the gateway's breaker sets it; once over, the
        # deployment is back (what room its limits leave is the headroom's question).
        until = call.timestamp.timestamp() + _COOLDOWNS.cooldown_for(error, call.retry_after_s)
        if until > facts.now:
            v.no.append(
                f"likely cooling down until {_clock(until)} ({note}): its latest call got "
                f"{error} ({_at(call)})"
            )
            return "cooling", True
    return "closed", True


def _at(result: CheckResult) -> str:
    return _clock(result.timestamp.timestamp())


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")
