"""The keys the gateway accepts, looked up by digest (``config.keys``), and the keys created at
run time (``llmpulse keys``, ``/api/v1/keys``), which every replica follows in the results store.

Run-time keys: the store keeps a key's digest and the policy it was created with. A
``gateway.keys`` mapping without ``key`` of the same name is that key's policy, and then it
wins whole over what was stored (the file is where policy is reviewed); names of keys written
in the config (and ``master``) are never a run-time key's. Each replica reads the table every
``POLL_S`` seconds in a thread and swaps its run-time keys in one assignment; a database that is
down leaves the keys it last read in place (said once, and again when it is back); one that
has never been read leaves the gateway asking for a key (only the config's can match), never
serving loopback clients without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmpulse.config.errors import format_errors
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.keys import GatewayKey, KeyConfig, key_digest
from llmpulse.config.storage import redact_url
from llmpulse.store import Store, database_errors, open_store
from llmpulse.store.keys import StoredKey

log = logging.getLogger(__name__)

POLL_S = 2.0
KEY_PREFIX = "sk-llmp-"


class KeyRefused(Exception):
    """A key cannot be created or changed as asked: one line saying why."""


class KeyTaken(KeyRefused):
    """The name asked for is a stored key's, or was: revoked names stay taken."""


class NoSuchKey(KeyRefused):
    """No run-time key has the name (or none that is not revoked, to rotate)."""


class KeyRing:
    """Every key a client may present. A presented key is hashed once and looked up: no key
    text is compared, so timing says nothing of how close a guess came."""

    def __init__(self, keys: Iterable[GatewayKey]) -> None:
        config = tuple(keys)
        self._by_digest = {k.digest: k for k in config if k.digest}
        self._policies = {k.name: k for k in config if not k.digest}
        self._config_names = frozenset(k.name for k in self._by_digest.values())
        self._runtime: dict[str, GatewayKey] = {}
        self._shadowed: set[str] = set()  # run-time keys named as config keys, said once
        # Whether a run-time key was ever stored, revoked ones included: a gateway asked to
        # check keys stays closed when the last one is revoked (never open to loopback again).
        self._stored_any = False
        # None: run-time keys are not followed; False: followed, but never read yet (closed:
        # there may be keys); True: read at least once.
        self.read: bool | None = None

    def __bool__(self) -> bool:
        unread = self.read is False
        return bool(self._by_digest or self._runtime or self._stored_any or unread)

    def lookup(self, presented: str) -> GatewayKey | None:
        if not presented:
            return None
        digest = key_digest(presented)
        return self._by_digest.get(digest) or self._runtime.get(digest)

    def taken(self, name: str) -> bool:
        """Whether ``name`` is a key of the config's (never a run-time key's name)."""
        return name in self._config_names

    def has_policy(self, name: str) -> bool:
        return name in self._policies

    def effective(self, stored: StoredKey) -> GatewayKey:
        """What a run-time key may do: its config policy if there is one, else as stored."""
        policy = self._policies.get(stored.name)
        if policy is None:
            return stored.gateway_key()
        return dataclasses.replace(policy, digest=stored.digest)

    def load(self, stored: Iterable[StoredKey]) -> None:
        """Make the unrevoked ``stored`` keys the run-time keys, replacing those before;
        ``stored`` holds the revoked ones too (they keep the gateway closed)."""
        runtime = {}
        for s in stored:
            self._stored_any = True
            if s.revoked_at is not None:
                continue
            if self.taken(s.name):
                # Created before the config gave a key that name: refused, as it would be now.
                if s.name not in self._shadowed:
                    self._shadowed.add(s.name)
                    log.warning("gateway keys: the run-time key %r is refused: the config "
                                "has a key of that name", s.name)  # fmt: skip
                continue
            runtime[s.digest] = self.effective(s)
        self._runtime = runtime  # one assignment: a request sees the old keys or the new
        self.read = True


def describe(stored: StoredKey, ring: KeyRing) -> dict[str, Any]:
    """What lists show of a run-time key (never the key): its effective policy, whence it
    comes (``config`` or ``stored``), its times, and its fingerprint."""
    key = ring.effective(stored)
    budget = key.budget
    return {
        "name": stored.name,
        "fingerprint": stored.fingerprint,
        "team": key.team,
        "models": list(key.models),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget": None
        if budget is None
        else {"max_usd": budget.max_usd, "period": str(budget.period), "warn_at": budget.warn_at},
        "drill": key.drill,
        "policy": "config" if ring.has_policy(stored.name) else "stored",
        "created_at": stored.created_at,
        "rotated_at": stored.rotated_at,
        "revoked_at": stored.revoked_at,
    }


def new_key() -> str:
    """A key's text: 256 random bits, with a prefix secret scanners can look for."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_entry(fields: dict[str, object], config: GatewayConfig | None, ring: KeyRing) -> KeyConfig:
    """The key ``fields`` ask for (name, team, models, rpm, tpm, budget, drill), as a
    ``gateway.keys`` mapping would give it; KeyRefused when it is malformed, its name is a config
    key's or its models name nothing ``config`` serves."""
    if "key" in fields:
        raise KeyRefused("key: a run-time key is generated, never given")
    try:
        entry = KeyConfig.model_validate(fields)
    except ValidationError as exc:
        raise KeyRefused(format_errors(exc)) from None
    if ring.taken(entry.name):
        raise KeyRefused(f"name: {entry.name!r} is a key of the config")
    for i, glob in enumerate(entry.models):
        if config is not None and not config.serves(glob):
            raise KeyRefused(f"models[{i}]: {config.no_group(glob)}")
    return entry


class RunTimeKeys:
    """The results store's run-time keys for one gateway (or command): read, created, revoked
    and rotated; the store opened on first use, in whichever thread calls."""

    def __init__(self, location: str | Path, ring: KeyRing) -> None:
        self.location = location
        self.ring = ring
        self._store: Store | None = None
        self._opening = threading.Lock()
        self._refreshing = threading.Lock()
        self._down = False

    @property
    def store(self) -> Store:
        with self._opening:
            if self._store is None:
                self._store = open_store(self.location)
            return self._store

    def listed(self) -> list[StoredKey]:
        """Every stored key, revoked ones too."""
        return self.store.stored_keys(revoked=True)

    def create(self, entry: KeyConfig, now: float) -> tuple[str, StoredKey]:
        """A new key (its text, shown once, and its row); KeyRefused when the name is taken."""
        text = new_key()
        budget = entry.budget.resolve() if entry.budget else None
        row = StoredKey(
            entry.name, key_digest(text), entry.team, tuple(entry.models), entry.rpm,
            entry.tpm, budget, created_at=now, drill=entry.drill,
        )  # fmt: skip
        if not self.store.add_key(row):
            raise KeyTaken(f"name: a key named {entry.name!r} exists (revoked names stay taken)")
        return text, row

    def revoke(self, name: str, now: float) -> StoredKey:
        revoked = self.store.revoke_key(name, now)
        if revoked is None:
            raise NoSuchKey(f"no run-time key named {name!r}")
        return revoked

    def rotate(self, name: str, now: float) -> tuple[str, StoredKey]:
        """A new key for ``name``, same policy; the old one is refused from now on."""
        text = new_key()
        rotated = self.store.rotate_key(name, key_digest(text), now)
        if rotated is None:
            raise NoSuchKey(f"no unrevoked run-time key named {name!r}")
        return text, rotated

    def refresh(self) -> bool:
        """Load the store's keys into the ring; False (the keys read before kept) when the
        database cannot be read. One refresh at a time (the poll's and an admin request's):
        a read taken before a change must not be loaded after the read that saw it."""
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            stored = self.store.stored_keys(revoked=True)
        except database_errors(OSError, RuntimeError) as exc:
            if self.ring.read is None:
                # Never read: there may be keys, so no loopback client is served without one.
                self.ring.read = False
            if not self._down:
                kept = (
                    "the last read stay in force"
                    if self.ring.read
                    else "until they are read, only the config's keys are accepted"
                )
                log.warning(
                    "gateway keys: cannot read the run-time keys (%s); %s until the database "
                    "answers",
                    redact_url(str(exc)),
                    kept,
                )
            self._down = True
            self._drop_store()
            return False
        if self._down:
            log.warning("gateway keys: the run-time keys are read again")
            self._down = False
        self.ring.load(stored)
        return True

    async def follow(self, stop: asyncio.Event, interval: float = POLL_S) -> None:
        """Refresh every ``interval`` seconds until ``stop``, never blocking the loop."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if not stop.is_set():
                await asyncio.to_thread(self.refresh)

    def _drop_store(self) -> None:
        """Forget a store that failed: the next read opens it again (a server back up)."""
        with self._opening:
            store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(*database_errors(OSError)):
                store.close()

    def close(self) -> None:
        self._drop_store()
