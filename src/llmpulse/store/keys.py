"""Gateway keys created at run time, as the results store keeps them (table ``gateway_keys``,
revision 0005; ``drill`` since 0008): a key's digest and policy, never its text.

A revoked key keeps its row, so its name stays taken: spend is recorded by key name, and a new
key under an old name would inherit the old one's history and budget.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from llmpulse.config.keys import Budget, GatewayKey, Period

# At most this many keys, revoked ones included: every gateway replica reads them all.
MAX_STORED_KEYS = 100_000
COLUMNS = "name, digest, team, models, rpm, tpm, budget, created_at, rotated_at, revoked_at, drill"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredKey:
    name: str
    digest: str = dataclasses.field(repr=False)  # SHA-256 hex of the key's text
    team: str | None = None
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    budget: Budget | None = None
    created_at: float = 0.0
    rotated_at: float | None = None
    revoked_at: float | None = None
    drill: bool = False  # may send live drills (x-llmpulse-drill)

    @property
    def fingerprint(self) -> str:
        """What lists show of the key: its digest's start. It says nothing of the key, yet
        whoever holds a key can tell it is this one (``sha256sum``)."""
        return self.digest[:8]

    def gateway_key(self) -> GatewayKey:
        return GatewayKey(
            self.name, self.digest, self.team, self.models, self.rpm, self.tpm, self.budget,
            drill=self.drill,
        )  # fmt: skip

    def row(self) -> tuple[object, ...]:
        budget = None
        if self.budget is not None:
            b = self.budget
            budget = json.dumps({"max_usd": b.max_usd, "period": b.period, "warn_at": b.warn_at})
        return (
            self.name, self.digest, self.team, json.dumps(list(self.models)), self.rpm,
            self.tpm, budget, self.created_at, self.rotated_at, self.revoked_at, self.drill,
        )  # fmt: skip


def decode(row: tuple[Any, ...]) -> StoredKey:
    name, digest, team, models, rpm, tpm, budget, created, rotated, revoked, drill = row
    spend = None
    if budget is not None:
        b = json.loads(budget)
        spend = Budget(float(b["max_usd"]), Period(b["period"]), b["warn_at"])
    return StoredKey(
        name, digest, team, tuple(json.loads(models)), rpm, tpm, spend, created, rotated, revoked,
        bool(drill),  # SQLite's 0/1
    )  # fmt: skip
