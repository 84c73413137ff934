"""Alerting state that must survive a restart: alert records, their history, silences and
acknowledgements.

Written by the one process that evaluates alerts (the leader, when several agents share a
PostgreSQL database: the next leader resumes from the same records), read by the CLI
(``llmpulse silence``) and the dashboard. With SQLite results it has its own file beside
them; with PostgreSQL results, its tables sit in the same database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from llmpulse.alerts import migrations
from llmpulse.alerts.billing import BillingDay, from_stored
from llmpulse.alerts.confirmation import KEEP_S, PostedIncident
from llmpulse.alerts.engine import AlertRecord
from llmpulse.alerts.model import Acknowledgement, AlertState, Notification
from llmpulse.alerts.silences import Silence
from llmpulse.config.storage import is_postgres, sqlite_path
from llmpulse.schedule import Schedule
from llmpulse.secrets import one_line


def state_paths(results_db: Path) -> tuple[Path, Path]:
    """Alert state and the notification outbox live beside a SQLite results database."""
    return (
        results_db.with_name(results_db.stem + "-alerts.db"),
        results_db.with_name(results_db.stem + "-outbox.db"),
    )


def state_locations(storage: str | Path) -> tuple[str | Path, str | Path]:
    """Where alert state and the outbox live for the results ``storage``: in the same
    PostgreSQL database (its URL), or in their SQLite files beside the results file."""
    if is_postgres(storage):
        return storage, storage
    return state_paths(sqlite_path(storage))


class UnknownAlert(LookupError):
    """No alert has this fingerprint."""


class NotFiring(ValueError):
    """Only a firing alert can be acknowledged."""


class AlertStateStore:
    """Thread-safe: every call takes its own pooled connection and transaction."""

    def __init__(self, location: str | Path) -> None:
        """``location``: the SQLite file, or the PostgreSQL URL."""
        self.location = location
        self._engine = migrations.open_engine(location, migrations.STATE)

    @classmethod
    def open(cls, storage: str | Path) -> AlertStateStore:
        """The alert state that belongs with the results ``storage`` (path or URL)."""
        return cls(state_locations(storage)[0])

    def load_records(self) -> list[AlertRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT record FROM alert_records")).all()
        return [AlertRecord.from_json(json.loads(r.record)) for r in rows]

    def save_records(self, records: Iterable[AlertRecord], now: float) -> None:
        rows = [
            {"fingerprint": r.fingerprint, "record": json.dumps(r.to_json()), "now": now}
            for r in records
        ]
        if not rows:
            return
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO alert_records (fingerprint, record, updated_at) "
                    "VALUES (:fingerprint, :record, :now) "
                    "ON CONFLICT (fingerprint) DO UPDATE SET record = excluded.record, "
                    "updated_at = excluded.updated_at"
                ),
                rows,
            )

    def record(self, fingerprint: str) -> AlertRecord | None:
        with self._engine.connect() as conn:
            raw = conn.execute(
                sa.text("SELECT record FROM alert_records WHERE fingerprint = :fp"),
                {"fp": fingerprint},
            ).scalar()
        return None if raw is None else AlertRecord.from_json(json.loads(raw))

    # --- acknowledgements: written by anyone, applied by the leader (Engine) ----------------

    def acknowledge(
        self, fingerprint: str, by: str, comment: str, now: float, via: str | None = None
    ) -> tuple[AlertRecord, Acknowledgement]:
        """Acknowledge the firing alert ``fingerprint``; acknowledging it again keeps the first
        acknowledgement. Raises UnknownAlert, or NotFiring."""
        by, comment = one_line(by), one_line(comment)  # they go into SMS and chat lines
        record = self.record(fingerprint)
        if record is None:
            raise UnknownAlert(fingerprint)
        if record.state is not AlertState.FIRING:
            raise NotFiring(f"alert {fingerprint} is {record.state or 'inactive'}, not firing")
        with self._engine.begin() as conn:
            # One of an earlier episode (resolved since, or escalated) is replaced.
            conn.execute(
                sa.text(
                    "INSERT INTO alert_acks (fingerprint, episode, acknowledged_by, "
                    "acknowledged_at, comment, via) VALUES (:fp, :episode, :by, :at, :comment, "
                    ":via) ON CONFLICT (fingerprint) DO UPDATE SET episode = excluded.episode, "
                    "acknowledged_by = excluded.acknowledged_by, "
                    "acknowledged_at = excluded.acknowledged_at, comment = excluded.comment, "
                    "via = excluded.via WHERE alert_acks.episode <> excluded.episode"
                ),
                {"fp": fingerprint, "episode": record.episode, "by": by, "at": now,
                 "comment": comment, "via": via},
            )  # fmt: skip
        ack = next((a for a in self.acknowledgements() if a.fingerprint == fingerprint), None)
        if ack is None:  # the leader saw the alert resolve meanwhile and forgot it
            raise NotFiring(f"alert {fingerprint} resolved meanwhile")
        return record, ack

    def unacknowledge(self, fingerprint: str) -> AlertRecord:
        """Take an acknowledgement back (escalation and repeats resume). Raises UnknownAlert."""
        record = self.record(fingerprint)
        if record is None:
            raise UnknownAlert(fingerprint)
        with self._engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM alert_acks WHERE fingerprint = :fp"), {"fp": fingerprint}
            )
        return record

    def acknowledgements(self) -> list[Acknowledgement]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT fingerprint, episode, acknowledged_by, acknowledged_at, comment, via "
                    "FROM alert_acks"
                )
            ).all()
        return [Acknowledgement(*row) for row in rows]

    def forget_acknowledgements(self, acks: Iterable[Acknowledgement]) -> None:
        """Delete acknowledgements of episodes that are over (unless acknowledged anew)."""
        rows = [{"fp": a.fingerprint, "episode": a.episode} for a in acks]
        if rows:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "DELETE FROM alert_acks WHERE fingerprint = :fp AND episode = :episode"
                    ),
                    rows,
                )

    def add_event(self, n: Notification, now: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO alert_events (at, fingerprint, status, rule, target, provider, "
                    "notification) VALUES (:at, :fingerprint, :status, :rule, :target, "
                    ":provider, :notification)"
                ),
                {"at": now, "fingerprint": n.fingerprint, "status": str(n.status),
                 "rule": n.rule, "target": n.target, "provider": n.provider,
                 "notification": json.dumps(n.to_json())},
            )  # fmt: skip

    def events(self, limit: int = 100) -> list[Notification]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT notification FROM alert_events ORDER BY id DESC LIMIT :limit"),
                {"limit": limit},
            ).all()
        return [Notification.from_json(json.loads(r.notification)) for r in rows]

    def events_between(
        self,
        start_ts: float,
        end_ts: float,
        *,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[float, Notification]]:
        """``(recorded_at, notification)`` with ``start_ts <= at < end_ts``, oldest first; with
        ``limit``, the newest ``limit`` of them."""
        sql = "SELECT at, notification FROM alert_events WHERE at >= :start AND at < :end"
        args: dict[str, object] = {"start": start_ts, "end": min(end_ts, 1e300)}
        if target is not None:
            sql += " AND target = :target"
            args["target"] = target
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT :limit"
            args["limit"] = limit
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text(sql), args).all()
        return [(r.at, Notification.from_json(json.loads(r.notification))) for r in reversed(rows)]

    def add_silence(self, silence: Silence) -> None:
        """Adds the silence, or replaces the one with its id."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO silences (id, starts_at, ends_at, silence) "
                    "VALUES (:id, :starts_at, :ends_at, :silence) "
                    "ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, "
                    "ends_at = excluded.ends_at, silence = excluded.silence"
                ),
                {"id": silence.id, "starts_at": silence.starts_at, "ends_at": silence.ends_at,
                 "silence": json.dumps(silence.to_json())},
            )  # fmt: skip

    def silences(self, now: float | None = None) -> list[Silence]:
        """All silences, or only those not yet ended at ``now`` (a recurring silence without
        an end has ``silences.NO_END`` in the column)."""
        sql = "SELECT id, starts_at, ends_at, silence FROM silences"
        args: dict[str, float] = {}
        if now is not None:
            sql += " WHERE ends_at > :now"
            args["now"] = now
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY starts_at"), args).all()
        out = []
        for sid, starts, ends, raw in rows:
            data = json.loads(raw)
            schedule = data.get("schedule")  # absent in rows written before recurring ones
            out.append(
                Silence(
                    id=sid, starts_at=starts, ends_at=ends, target=data["target"],
                    provider=data["provider"], rule=data["rule"], comment=data["comment"],
                    created_by=data["created_by"],
                    schedule=Schedule.from_json(schedule) if schedule else None,
                )
            )  # fmt: skip
        return out

    def end_silence(self, silence_id: str, now: float) -> bool:
        with self._engine.begin() as conn:
            cursor = conn.execute(
                sa.text("UPDATE silences SET ends_at = :now WHERE id = :id AND ends_at > :now"),
                {"now": now, "id": silence_id},
            )
        return cursor.rowcount > 0

    # --- SLO minutes: written by the leader (alerts.slo.Recorder), read by anyone --------

    def save_slo_minutes(self, rows: Iterable[tuple[str, str, int, int, int]]) -> None:
        """``(slo, definition, minute start ts, events, good)``: absolute counts, replacing
        what a minute had."""
        args = [
            {"slo": s, "definition": d, "minute": m, "events": e, "good": g}
            for s, d, m, e, g in rows
        ]
        if not args:
            return
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO slo_minutes (slo, minute, definition, events, good) "
                    "VALUES (:slo, :minute, :definition, :events, :good) "
                    "ON CONFLICT (slo, minute) DO UPDATE SET definition = excluded.definition, "
                    "events = excluded.events, good = excluded.good"
                ),
                args,
            )

    def slo_minutes(self, slo: str, definition: str, since_ts: float) -> list[tuple[int, int, int]]:
        """``(minute start ts, events, good)`` of ``slo`` counted by ``definition`` from
        ``since_ts`` on, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT minute, events, good FROM slo_minutes WHERE slo = :slo "
                    "AND definition = :definition AND minute >= :since AND events > 0 "
                    "ORDER BY minute"
                ),
                {"slo": slo, "definition": definition, "since": int(since_ts)},
            ).all()
        return [(int(m), int(e), int(g)) for m, e, g in rows]

    def slo_sums(
        self, slo: str, definition: str, last_ts: int, windows: Sequence[float]
    ) -> tuple[dict[float, tuple[int, int]], float | None]:
        """``(events, good)`` of ``slo`` over each of ``windows`` ending with the minute that
        starts at ``last_ts``, summed here rather than read a minute at a time; and the start of
        the first minute with events in the longest."""
        keys = list(dict.fromkeys(windows))
        sums = ", ".join(
            f"coalesce(sum(CASE WHEN minute > :since{i} THEN events END), 0), "
            f"coalesce(sum(CASE WHEN minute > :since{i} THEN good END), 0)"
            for i in range(len(keys))
        )
        args: dict[str, object] = {"slo": slo, "definition": definition, "last": last_ts}
        args |= {f"since{i}": int(last_ts - w) for i, w in enumerate(keys)}
        args["oldest"] = int(last_ts - max(keys))
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    f"SELECT {sums}, min(minute) FROM slo_minutes WHERE slo = :slo "
                    "AND definition = :definition AND minute > :oldest AND minute <= :last "
                    "AND events > 0"
                ),
                args,
            ).one()
        found = {w: (int(row[2 * i]), int(row[2 * i + 1])) for i, w in enumerate(keys)}
        return found, None if row[-1] is None else float(row[-1])

    def prune_slo_minutes(self, keep: Mapping[str, tuple[str, float]]) -> None:
        """Keep, of each SLO named in ``keep``, the minutes of its ``(definition, since_ts)``;
        an SLO no longer configured keeps nothing."""
        with self._engine.begin() as conn:
            names = [r.slo for r in conn.execute(sa.text("SELECT DISTINCT slo FROM slo_minutes"))]
            for name in names:
                if name not in keep:
                    conn.execute(sa.text("DELETE FROM slo_minutes WHERE slo = :slo"), {"slo": name})
                    continue
                definition, since = keep[name]
                conn.execute(
                    sa.text(
                        "DELETE FROM slo_minutes WHERE slo = :slo "
                        "AND (minute < :since OR definition <> :definition)"
                    ),
                    {"slo": name, "since": int(since), "definition": definition},
                )

    # --- billing days: written by the leader's reconciliation (monitor.billing) -----------

    def save_billing_day(self, entry: BillingDay) -> None:
        """Adds the day, or replaces what an earlier run found of it."""
        r = entry.reconciliation
        row = {
            "provider": entry.provider, "day": entry.day.isoformat(), "at": entry.checked_at,
            "status": entry.status, "error": entry.error,
            "reported": r.reported_usd if r else None, "measured": r.measured_usd if r else None,
            "drift": bool(r and r.drift), "detail": json.dumps(r.to_json()) if r else None,
        }  # fmt: skip
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO billing_days (provider, day, checked_at, status, reported_usd, "
                    "measured_usd, drift, detail, error) VALUES (:provider, :day, :at, :status, "
                    ":reported, :measured, :drift, :detail, :error) ON CONFLICT (provider, day) "
                    "DO UPDATE SET checked_at = excluded.checked_at, status = excluded.status, "
                    "reported_usd = excluded.reported_usd, measured_usd = excluded.measured_usd, "
                    "drift = excluded.drift, detail = excluded.detail, error = excluded.error"
                ),
                row,
            )

    def billing_days(self, since: date, provider: str | None = None) -> list[BillingDay]:
        """Every provider's days from ``since`` on (only ``provider``'s when given), oldest
        first."""
        sql = (
            "SELECT provider, day, checked_at, status, reported_usd, measured_usd, detail, error "
            "FROM billing_days WHERE day >= :since"
        )
        args: dict[str, object] = {"since": since.isoformat()}
        if provider is not None:
            sql += " AND provider = :provider"
            args["provider"] = provider
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY day, provider"), args).all()
        out = []
        for name, day, at, status, reported, measured, detail, error in rows:
            when = date.fromisoformat(day)
            compared = None
            if detail is not None:
                compared = from_stored(name, when, reported, measured, json.loads(detail))
            out.append(BillingDay(name, when, at, status, compared, error))
        return out

    # --- official incidents: written by every poller (alerts.confirmation) ---------------------

    def save_official_incidents(self, incidents: Iterable[PostedIncident], now: float) -> None:
        """Adds those not seen before; of the others, only when they were last seen changes
        (the first sighting's name, time and components stay)."""
        rows = [
            {
                "provider": i.provider, "id": i.id, "name": one_line(i.name)[:200],
                "created": i.created_at, "now": now, "components": json.dumps(i.components),
                "url": i.url,
            }
            for i in incidents
        ]  # fmt: skip
        if not rows:
            return
        with self._engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO official_incidents (provider, incident_id, name, created_at, "
                    "first_seen, last_seen, components, url) VALUES (:provider, :id, :name, "
                    ":created, :now, :now, :components, :url) ON CONFLICT (provider, "
                    "incident_id) DO UPDATE SET last_seen = excluded.last_seen"
                ),
                rows,
            )

    def prune_official_incidents(self, now: float) -> None:
        """Forgets the incidents no longer seen open within what the acknowledgement record
        looks at (``confirmation.KEEP_S``)."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM official_incidents WHERE last_seen < :before"),
                {"before": now - KEEP_S},
            )

    def official_incidents(
        self, since_ts: float, provider: str | None = None
    ) -> list[PostedIncident]:
        """Incidents the pages posted, or still listed open, from ``since_ts`` on
        (``provider``'s only when given), oldest first."""
        sql = (
            "SELECT provider, incident_id, name, created_at, components, url, last_seen "
            "FROM official_incidents WHERE (created_at >= :since OR last_seen >= :since)"
        )
        args: dict[str, object] = {"since": since_ts}
        if provider is not None:
            sql += " AND provider = :provider"
            args["provider"] = provider
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY created_at"), args).all()
        return [
            PostedIncident(p, i, n, at, tuple(json.loads(c)), url, seen)
            for p, i, n, at, c, url, seen in rows
        ]

    def close(self) -> None:
        self._engine.dispose()
