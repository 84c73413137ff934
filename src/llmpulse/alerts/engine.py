"""The alert lifecycle: pending → firing → resolved, deduplicated, grouped, silenced.

Modelled on Alertmanager. An alert is identified by its fingerprint (rule + subject). A firing
alert is notified once, re-notified only after ``repeat_interval``, and resolved only after its
condition has stayed clear for ``resolve_after`` (``flap_resolve_after`` once it has fired
``flap_threshold`` times within ``flap_window``), so a flapping target pages once, not on every
flip. Outage alerts are grouped: when every target of a provider fails, one provider-level alert
goes out instead of one per model, and when every provider fails at once, one alert says the
fault is probably on our side. Silences suppress notifications, never the state.

Where a notice goes is the routes' answer (``alerts.routes``) on the alert's labels. An episode
(from firing to resolved) remembers every notifier it paged, so its acknowledgement and its
resolution reach exactly those. A page nobody acknowledges escalates through its route's steps,
counted from the episode's first page; an acknowledged alert neither escalates nor repeats
until it resolves or escalates in severity, when its pages (and their clock) start again on
the route of the new severity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from llmpulse.alerts.model import Acknowledgement, AlertState, Notification
from llmpulse.alerts.routes import Routes
from llmpulse.alerts.silences import Silence
from llmpulse.alerts.window import Evaluation
from llmpulse.rules import (
    ALL_PROVIDERS_RULE,
    AVAILABILITY_RULES,
    BILLING_DRIFT_RULE,
    BUDGET_RULES,
    FAILOVER_PATH_BROKEN,
    GROUP_RULES,
    INCIDENT,
    OFFICIAL_STATUS_RULE,
    PROVIDER_RULE,
    SLO_BURN_RULE,
    Severity,
)

log = logging.getLogger(__name__)

ALL = "*"  # subject of the "every provider is failing" alert
COST_SPIKE_RULE = "cost_spike"  # per provider, and for all of them under ALL
# Which availability rule leads an incident's page when several fire (earlier = preferred).
_RANK = {rule: i for i, rule in enumerate(AVAILABILITY_RULES)}


def alert_scope(rule: str, custom: Mapping[str, str] | None = None, target: str = "") -> str:
    """What an alert's ``target`` names: a target, a provider, a model, every provider ("*"),
    an SLO, a gateway key or team (a budget rule's ``key:NAME``, ``team:NAME``), or a gateway
    model group (``group:NAME``); ``custom``:
    the scope of each custom rule (``alerts.metric_rules.scopes``)."""
    if custom and rule in custom:
        return custom[rule]
    if rule in BUDGET_RULES or rule in GROUP_RULES:
        return target.partition(":")[0]
    if rule == ALL_PROVIDERS_RULE:
        return "all"
    if rule in (PROVIDER_RULE, OFFICIAL_STATUS_RULE, COST_SPIKE_RULE, BILLING_DRIFT_RULE):
        return "provider"
    if rule == SLO_BURN_RULE:
        return "slo"
    if rule == FAILOVER_PATH_BROKEN:
        return "failover_path"
    return "target"


@dataclasses.dataclass(frozen=True, slots=True)
class AlertSettings:
    repeat_interval_s: float = 4 * 3600
    resolve_after_s: float = 30.0
    group_wait_s: float = 1.0
    flap_window_s: float = 3600.0
    flap_threshold: int = 3
    flap_resolve_after_s: float = 600.0


class Notify(Protocol):
    def __call__(
        self, notification: Notification, receivers: Sequence[str], *, resend: bool = False
    ) -> None:
        """Queue ``notification`` for ``receivers`` (the notifiers' names). A ``resend`` keeps a
        receiver that forgets firing alerts informed: it is not an event of the alert's own."""


@dataclasses.dataclass(slots=True)
class AlertRecord:
    """Everything the engine knows about one alert; persisted so a restart resumes it."""

    fingerprint: str
    rule: str
    target: str
    provider: str
    severity: Severity
    state: AlertState | None = None  # None: inactive
    active_since: float | None = None
    fired_at: float | None = None
    clear_since: float | None = None
    resolved_at: float | None = None
    notified: bool = False  # its firing went out, so its resolution must too
    last_notified_at: float | None = None
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    fire_times: list[float] = dataclasses.field(default_factory=list)
    group_until: float | None = None  # an incident waits this long for its siblings
    inhibited_by: str | None = None  # fingerprint of the group alert that stands for it
    lead_rule: str | None = None  # for an incident: the rule it is notified as
    # This episode (firing until resolved): every notifier it paged, when its current pages
    # started (the escalation clock), the escalation step reached, who acknowledged it.
    # A tuple and None by default: every target has a record per rule, most never fire, and
    # an empty list and dict each would cost ~120 bytes a record (8 MB at 5,000 targets).
    paged: tuple[str, ...] = ()
    paged_at: float | None = None
    escalation_step: int = 0
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    acknowledged_via: str | None = None  # the notifier it came from, which needs no notice
    resent_at: dict[str, float] | None = None
    # model_changed: the change it announces (what was served before, what is served now).
    previous: str | None = None
    current: str | None = None
    # Labels of its own beside the four every alert has (failover_path_broken: group, path,
    # deployment), for routes to match on.
    extra_labels: dict[str, str] | None = None

    @property
    def episode(self) -> str:
        """What an acknowledgement is of: this firing, at this severity."""
        return f"{self.fired_at}/{self.severity}"

    @property
    def labels(self) -> dict[str, str]:
        """What routes and silences match on."""
        return {
            **(self.extra_labels or {}),
            "severity": str(self.severity),
            "provider": self.provider,
            "target": self.target,
            "rule": self.lead_rule or self.rule,
        }

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["severity"] = str(self.severity)
        data["state"] = str(self.state) if self.state else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertRecord:
        data = dict(data)
        data["severity"] = Severity(data["severity"])
        data["state"] = AlertState(data["state"]) if data.get("state") else None
        data["paged"] = tuple(data.get("paged") or ())
        return cls(**data)


def listed(record: AlertRecord) -> bool:
    """Whether a record is an alert of its own in listings. A firing availability rule is a
    member of its target's incident, which is what pages and is listed (under its lead rule's
    id): listing both showed one incident as two alerts of one rule."""
    return not (record.rule in AVAILABILITY_RULES and record.state is AlertState.FIRING)


def fingerprint(rule: str, subject: str) -> str:
    return hashlib.sha256(f"{rule}\0{subject}".encode()).hexdigest()[:16]


class Engine:
    """Turns rule evaluations into notifications. Single-threaded: call from one event loop."""

    def __init__(
        self,
        targets_by_provider: Mapping[str, Iterable[str]],
        notify: Notify,
        settings: AlertSettings | None = None,
        records: Iterable[AlertRecord] = (),
        official_status: Callable[[str], str | None] = lambda provider: None,
        *,
        routes: Routes | None = None,
        resend_intervals: Mapping[str, float] | None = None,
        in_maintenance: Callable[[str], bool] | None = None,
        alert_url: Callable[[str], str | None] = lambda fingerprint: None,
    ) -> None:
        """``routes``: where notices go (default: nowhere but the history). ``resend_intervals``:
        the notifiers that must hear of a firing alert again, and how often. ``in_maintenance``:
        whether a provider's own status page announces maintenance now (its pages are then held
        back; None: never held back for that). ``alert_url``: the dashboard's link to an alert,
        for the notices."""
        self.settings = settings or AlertSettings()
        self.targets_by_provider = {p: set(ts) for p, ts in targets_by_provider.items()}
        self._notify = notify
        self._official_status = official_status
        self.routes = routes or Routes(None, ())
        self._resend = dict(resend_intervals or {})
        self._in_maintenance = in_maintenance
        self._alert_url = alert_url
        self.records: dict[str, AlertRecord] = {r.fingerprint: r for r in records}
        for record in self.records.values():
            if record.notified and record.paged_at is None and not record.paged:
                # Paged by a release that did not record whom: what the routes say now stands
                # for it, so its acknowledgement and resolution reach someone.
                record.paged = self.routes.delivery(record.labels).notify
                record.paged_at = record.last_notified_at or record.fired_at
        self.silences: list[Silence] = []
        self.dirty: set[str] = set()  # fingerprints changed since the last save
        self._live: set[str] = set()  # firing or grouping: the records tick() looks at
        for fp in self.records:
            self._refresh_live(fp)

    # --- inputs -------------------------------------------------------------------------

    def observe(
        self, target: str, provider: str, evaluations: Iterable[Evaluation], now: float
    ) -> None:
        """Feed one target's latest rule evaluations."""
        for ev in evaluations:
            record = self._record(ev.rule.id, target, provider, ev.rule.severity)
            if ev.current is not None:  # a change of the served model: a point event
                change = (ev.previous, ev.current)
                if change == (record.previous, record.current):
                    if record.state is AlertState.RESOLVED:
                        continue  # announced already (windows refilled after a restart)
                elif record.state is AlertState.FIRING:
                    self._resolve(record, now)  # the next change is a notice of its own
                record.previous, record.current = change
            active = ev.holding if record.state is AlertState.FIRING else ev.active
            if active is None:  # too few samples to say either way (e.g. just restarted)
                continue
            if active or record.state is not AlertState.FIRING:
                record.value, record.summary = ev.value, ev.summary  # keep what it fired with
            record.threshold = ev.rule.threshold
            self._step(record, active, ev.rule.for_s, now)

    def observe_official(self, provider: str, indicator: str, description: str, now: float) -> None:
        """The provider's status page: an alert while it reports anything but normal."""
        severity = Severity.CRITICAL if indicator in ("major", "critical") else Severity.WARNING
        active = indicator in ("minor", "major", "critical", "maintenance")
        summary = f"{provider} status page: {description} ({indicator})"
        self.observe_graded(
            OFFICIAL_STATUS_RULE, provider, provider, severity if active else None, summary, now,
            resolve_after=0.0,
        )  # fmt: skip

    def observe_graded(
        self,
        rule: str,
        subject: str,
        provider: str,
        severity: Severity | None,
        summary: str,
        now: float,
        *,
        value: float | None = None,
        threshold: float | None = None,
        resolve_after: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """One alert whose condition says its own severity (None: it does not hold): an
        official status page, an SLO's burn rate. It fires at once; a firing warning that
        turns critical escalates; a critical one that eases to warning stays as paged.
        ``labels``: the alert's own labels beside the usual four (``AlertRecord.labels``)."""
        record = self._record(rule, subject, provider, severity or Severity.WARNING)
        if labels is not None and severity is not None:
            record.extra_labels = dict(labels)
        active = severity is not None
        firing = record.state is AlertState.FIRING
        escalated = firing and record.severity is Severity.WARNING and severity is Severity.CRITICAL
        # A firing alert keeps the severity it was paged with, unless it escalates; a
        # resolution keeps it too.
        if severity is not None and (not firing or escalated):
            record.severity = severity
        record.summary = summary
        if active or not firing:
            record.value, record.threshold = value, threshold
        self._step(record, active, 0.0, now, resolve_after=resolve_after)
        if escalated and record.notified:
            self._escalate(record, now)

    def tick(self, now: float) -> None:
        """Flush grouped outage alerts and send repeat notifications; call about once a second.

        Only live records (firing, or waiting for their group) need this; which ones are live is
        refreshed from the records changed since the last tick, so a tick costs in proportion
        to what is happening, not to the number of targets.
        """
        for fp in self.dirty:
            self._refresh_live(fp)
        for fp in list(self._live):
            if not self._refresh_live(fp):
                continue
            try:
                self._tick_one(self.records[fp], now)
            except Exception:  # a failed hand-over is retried next tick; others go on now
                log.exception("alert %s: notification not handed over; will retry", fp)

    def _tick_one(self, record: AlertRecord, now: float) -> None:
        if record.state is AlertState.RESOLVED:
            self._send(record, AlertState.RESOLVED, now)  # its hand-over failed earlier
        elif record.group_until is not None and now >= record.group_until:
            self._flush_group(record.provider, now)
        elif (
            record.state is AlertState.FIRING
            and record.inhibited_by is None
            and record.group_until is None
            and record.rule not in AVAILABILITY_RULES  # their incident is what pages
        ):
            if not record.notified or record.paged_at is None:
                # Not paged yet, or its escalation in severity not yet: e.g. a silence just
                # ended, or the hand-over failed.
                self._send(record, AlertState.FIRING, now)
                return
            if record.acknowledged_at is None:
                step = self._due_step(record, now)
                if step is not None:
                    self._send(record, AlertState.FIRING, now, step=step)
                elif (
                    record.last_notified_at is not None
                    and now - record.last_notified_at >= self.settings.repeat_interval_s
                ):
                    self._send(record, AlertState.FIRING, now)
            self._resend_due(record, now)

    def _due_step(self, record: AlertRecord, now: float) -> int | None:
        """The escalation step (1, 2, ...) whose time has come, if any."""
        if record.paged_at is None:
            return None
        steps = self.routes.delivery(record.labels).escalate
        k = record.escalation_step
        if k < len(steps) and now - record.paged_at >= steps[k].after_s:
            return k + 1
        return None

    def _resend_due(self, record: AlertRecord, now: float) -> None:
        if record.paged_at is None:
            return
        since, resent = record.paged_at, record.resent_at or {}
        due = [
            name
            for name in record.paged
            if name in self._resend and now - resent.get(name, since) >= self._resend[name]
        ]
        if not due:
            return
        status = AlertState.FIRING if record.acknowledged_at is None else AlertState.ACKNOWLEDGED
        self._notify(self._notification(record, status, now), due, resend=True)
        record.resent_at = {**resent, **dict.fromkeys(due, now)}
        self.dirty.add(record.fingerprint)

    def _refresh_live(self, fp: str) -> bool:
        record = self.records.get(fp)
        live = record is not None and (
            record.state is AlertState.FIRING
            or record.group_until is not None
            or (record.state is AlertState.RESOLVED and record.notified)  # resolution unsent
        )
        if live:
            self._live.add(fp)
        else:
            self._live.discard(fp)
        return live

    # --- lifecycle ----------------------------------------------------------------------

    def _record(self, rule: str, target: str, provider: str, severity: Severity) -> AlertRecord:
        fp = fingerprint(rule, target)
        record = self.records.get(fp)
        if record is None:
            record = AlertRecord(fp, rule, target, provider, severity)
            self.records[fp] = record
        return record

    def _step(
        self,
        record: AlertRecord,
        active: bool,
        for_s: float,
        now: float,
        resolve_after: float | None = None,
    ) -> None:
        s = self.settings
        if active:
            record.clear_since = None
            if record.state in (None, AlertState.RESOLVED):
                record.state, record.active_since = AlertState.PENDING, now
                self.dirty.add(record.fingerprint)
            if record.state is AlertState.PENDING and now - (record.active_since or now) >= for_s:
                self._fire(record, now)
            return
        if record.state is AlertState.PENDING:
            record.state, record.active_since = None, None
            self.dirty.add(record.fingerprint)
        elif record.state is AlertState.FIRING:
            if record.clear_since is None:
                record.clear_since = now
                self.dirty.add(record.fingerprint)
            recent_fires = [t for t in record.fire_times if now - t <= s.flap_window_s]
            wait = s.resolve_after_s if resolve_after is None else resolve_after
            if len(recent_fires) >= s.flap_threshold:
                wait = max(wait, s.flap_resolve_after_s)
            if now - record.clear_since >= wait:
                self._resolve(record, now)

    def _fire(self, record: AlertRecord, now: float) -> None:
        record.state, record.fired_at, record.resolved_at = AlertState.FIRING, now, None
        record.notified = False
        _new_episode(record)
        record.fire_times = [t for t in record.fire_times if now - t <= self.settings.flap_window_s]
        record.fire_times.append(now)
        self.dirty.add(record.fingerprint)
        if record.rule in AVAILABILITY_RULES:
            self._update_incident(record.target, record.provider, now)
        else:
            self._send(record, AlertState.FIRING, now)

    def _resolve(self, record: AlertRecord, now: float) -> None:
        record.state, record.resolved_at, record.clear_since = AlertState.RESOLVED, now, None
        record.group_until = None
        self.dirty.add(record.fingerprint)
        if record.rule in AVAILABILITY_RULES:
            self._update_incident(record.target, record.provider, now)
            return
        if record.notified:
            self._send(record, AlertState.RESOLVED, now)
        inhibitor = record.inhibited_by
        record.inhibited_by = None
        if inhibitor is not None:
            self._maybe_resolve_group(inhibitor, now)

    # --- availability incidents -----------------------------------------------------------

    def _update_incident(self, target: str, provider: str, now: float) -> None:
        """One incident per target for the availability rules, led by the worst one firing.

        A hard outage trips the error-rate rules and the consecutive-failures rule within
        seconds of each other; paging for each would be three pages for one incident. The
        incident pages once (after ``group_wait``, with the worst severity by then), again only
        if it escalates from warning to critical, and resolves when every member has cleared.
        """
        firing = [
            m
            for rule in AVAILABILITY_RULES
            if (m := self.records.get(fingerprint(rule, target))) is not None
            and m.state is AlertState.FIRING
        ]
        incident = self._record(INCIDENT, target, provider, Severity.WARNING)
        self.dirty.add(incident.fingerprint)
        if not firing:
            if incident.state is AlertState.FIRING:
                self._resolve(incident, now)
            return
        lead = max(firing, key=lambda m: (m.severity == Severity.CRITICAL, -_RANK[m.rule]))
        paged = incident.state is AlertState.FIRING and incident.notified
        escalated = incident.severity == Severity.WARNING and lead.severity == Severity.CRITICAL
        if not paged or escalated:  # once paged, the page's rule and words stand until it ends
            incident.lead_rule, incident.severity = lead.rule, lead.severity
            incident.value, incident.threshold = lead.value, lead.threshold
            incident.summary = lead.summary
        if incident.state is not AlertState.FIRING:
            incident.state, incident.fired_at, incident.resolved_at = AlertState.FIRING, now, None
            incident.active_since, incident.notified, incident.clear_since = now, False, None
            _new_episode(incident)
            group = self._active_group(provider)
            if group is not None:
                incident.inhibited_by = group.fingerprint  # the group alert speaks for it
            else:
                incident.group_until = now + self.settings.group_wait_s
        elif escalated and incident.notified and incident.inhibited_by is None:
            self._escalate(incident, now)

    def _escalate(self, record: AlertRecord, now: float) -> None:
        """A paged alert escalated from warning to critical: the critical route takes over,
        with its pages and its escalation clock; an acknowledgement of the warning does not
        hold for the critical alert."""
        record.paged_at, record.escalation_step = None, 0
        _clear_acknowledgement(record)
        self.dirty.add(record.fingerprint)
        self._send(record, AlertState.FIRING, now)

    # --- grouping -----------------------------------------------------------------------

    def _failing(self, provider: str) -> list[AlertRecord]:
        return [
            r
            for r in self.records.values()
            if r.provider == provider and r.rule == INCIDENT and r.state is AlertState.FIRING
        ]

    def _all_failing(self, provider: str) -> bool:
        targets = self.targets_by_provider.get(provider, set())
        return bool(targets) and targets <= {r.target for r in self._failing(provider)}

    def _active_group(self, provider: str) -> AlertRecord | None:
        for fp in (fingerprint(ALL_PROVIDERS_RULE, ALL), fingerprint(PROVIDER_RULE, provider)):
            record = self.records.get(fp)
            if record is not None and record.state is AlertState.FIRING:
                return record
        return None

    def _flush_group(self, provider: str, now: float) -> None:
        """group_wait is over for an incident of ``provider``: page it alone or as a group."""
        waiting = [r for r in self._failing(provider) if r.group_until is not None]
        for r in waiting:
            r.group_until = None
            self.dirty.add(r.fingerprint)
        group = self._active_group(provider)
        providers = [p for p, targets in self.targets_by_provider.items() if targets]
        if group is None and len(providers) > 1 and all(map(self._all_failing, providers)):
            group = self._group_alert(
                ALL_PROVIDERS_RULE, ALL, ALL,
                f"every provider is failing at once ({', '.join(sorted(providers))}): "
                "the fault is probably on our side — network, DNS, proxy or keys",
                now,
            )  # fmt: skip
        elif (
            group is None
            and len(self.targets_by_provider.get(provider, ())) > 1
            and self._all_failing(provider)
        ):
            failing = self._failing(provider)
            group = self._group_alert(
                PROVIDER_RULE, provider, provider,
                f"{provider} is down: all {len(failing)} targets failing "
                f"({'; '.join(sorted({r.summary for r in failing}))})",
                now,
            )  # fmt: skip
        if group is None:
            for r in waiting:
                self._send(r, AlertState.FIRING, now)
            return
        members = self._failing(provider) if group.rule == PROVIDER_RULE else [
            r for p in providers for r in self._failing(p)
        ]  # fmt: skip
        for r in members:
            if not r.notified and r.inhibited_by is None:
                r.inhibited_by = group.fingerprint
                r.group_until = None
                self.dirty.add(r.fingerprint)

    def _group_alert(
        self, rule: str, subject: str, provider: str, summary: str, now: float
    ) -> AlertRecord:
        record = self._record(rule, subject, provider, Severity.CRITICAL)
        record.summary = summary
        record.state, record.active_since = AlertState.FIRING, now
        record.fired_at, record.notified, record.clear_since = now, False, None
        record.resolved_at = None
        _new_episode(record)
        self.dirty.add(record.fingerprint)
        self._send(record, AlertState.FIRING, now)
        return record

    def _maybe_resolve_group(self, group_fp: str, now: float) -> None:
        group = self.records.get(group_fp)
        if group is None or group.state is not AlertState.FIRING:
            return
        if any(r.inhibited_by == group_fp for r in self.records.values()):
            return
        self._resolve(group, now)

    # --- delivery -----------------------------------------------------------------------

    def _send(
        self, record: AlertRecord, status: AlertState, now: float, step: int | None = None
    ) -> None:
        """Notify of ``record``: its first page (on its route), a repeat (to whoever it paged),
        escalation ``step``, or its resolution (to whoever it paged)."""
        # A silence holds back pages; the end of a page that already went out is still sent,
        # so no incident is left open on the receiving side.
        if status is AlertState.FIRING and self.silenced(record, now):
            return
        receivers: Sequence[str]
        if status is not AlertState.FIRING:
            receivers = record.paged
        elif step is not None:
            receivers = self.routes.delivery(record.labels).escalate[step - 1].notify
        elif record.paged_at is None:
            receivers = self.routes.delivery(record.labels).notify
        else:
            receivers = record.paged
        notification = self._notification(record, status, now, step)
        self._notify(notification, receivers)  # if this raises, nothing is marked sent
        if status is AlertState.FIRING:
            if record.paged_at is None:
                record.paged_at = now
            if step is not None:
                record.escalation_step = step
            record.paged += tuple(name for name in receivers if name not in record.paged)
        record.notified = status is AlertState.FIRING
        record.last_notified_at = now
        self.dirty.add(record.fingerprint)

    def _notification(
        self, record: AlertRecord, status: AlertState, now: float, step: int | None = None
    ) -> Notification:
        return Notification(
            status=status,
            severity=record.severity,
            rule=record.lead_rule or record.rule,
            target=record.target,
            provider=record.provider,
            summary=record.summary,
            value=record.value,
            threshold=record.threshold,
            starts_at=_dt(now if record.fired_at is None else record.fired_at),
            ends_at=_dt(now) if status is AlertState.RESOLVED else None,
            fingerprint=record.fingerprint,
            official_status=self._official_status(record.provider),
            escalation_step=record.escalation_step if step is None else step,
            acknowledged_by=record.acknowledged_by,
            acknowledged_at=(
                None if record.acknowledged_at is None else _dt(record.acknowledged_at)
            ),
            url=self._alert_url(record.fingerprint),
            previous=record.previous,
            current=record.current,
        )

    def silenced(self, record: AlertRecord, now: float) -> bool:
        rule = record.lead_rule or record.rule
        if any(s.matches(rule, record.target, record.provider, now) for s in self.silences):
            return True
        held = self._in_maintenance
        return held is not None and record.provider != ALL and held(record.provider)

    # --- acknowledgement ----------------------------------------------------------------

    def sync_acknowledgements(
        self, acks: Mapping[str, Acknowledgement], now: float
    ) -> list[Acknowledgement]:
        """Apply the stored acknowledgements (by fingerprint): a new one stops its alert's
        escalation and repeats and tells whoever was paged; one taken back lets them resume.
        Returns those no longer of a firing alert's episode, for the store to delete."""
        stale = []
        for fp, ack in acks.items():
            record = self.records.get(fp)
            if (
                record is None
                or record.state is not AlertState.FIRING
                or ack.episode != record.episode
            ):
                stale.append(ack)
            elif record.acknowledged_at is None:
                record.acknowledged_by, record.acknowledged_at = ack.by, ack.at
                record.acknowledged_via = ack.via
                if record.notified:
                    notice = self._notification(record, AlertState.ACKNOWLEDGED, now)
                    try:
                        self._notify(notice, [n for n in record.paged if n != ack.via])
                    except Exception:  # not handed over: applied again next tick
                        log.exception("alert %s: acknowledgement not handed over; will retry", fp)
                        _clear_acknowledgement(record)
                        continue
                self.dirty.add(fp)
        for fp in self._live:
            record = self.records[fp]
            if record.acknowledged_at is not None and fp not in acks:
                _clear_acknowledgement(record)  # taken back: escalation and repeats resume
                self.dirty.add(fp)
        return stale

    def take_dirty(self) -> list[AlertRecord]:
        """Records changed since the last call, for the state store."""
        changed = [self.records[fp] for fp in self.dirty if fp in self.records]
        self.dirty.clear()
        return changed


def _new_episode(record: AlertRecord) -> None:
    record.paged, record.paged_at, record.escalation_step = (), None, 0
    record.resent_at = None
    _clear_acknowledgement(record)


def _clear_acknowledgement(record: AlertRecord) -> None:
    record.acknowledged_by = record.acknowledged_at = record.acknowledged_via = None


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
