"""The storage interface. SQLite is the zero-setup default; other backends implement the same."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Literal

from llmpulse.result import CheckResult
from llmpulse.store.rollup import Summary

RAW_RETENTION_S = 7 * 86400
ROLLUP_RETENTION_S = 400 * 86400

GroupBy = Literal["target", "provider", "bucket"] | None


@dataclasses.dataclass(slots=True)
class Sample:
    """The fields of one stored result that metrics read: lighter than a ``CheckResult``."""

    ts: float
    target: str
    provider: str
    check: str
    ok: bool
    error_class: str | None
    latency_ms: float | None
    ttft_ms: float | None
    tokens_per_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    rl_utilization: float | None


@dataclasses.dataclass(slots=True)
class PruneStats:
    results: int
    rollups: int


class Store(abc.ABC):
    @abc.abstractmethod
    def write_results(self, results: Sequence[CheckResult]) -> None:
        """Persist results in one transaction."""

    @abc.abstractmethod
    def latest_results(self, limit: int = 100, target: str | None = None) -> list[CheckResult]:
        """Most recent results first."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # Rollups and metrics. Not abstract, so that test doubles of the write path keep working.

    def results_between(
        self, start_ts: float, end_ts: float, target: str | None = None
    ) -> list[CheckResult]:
        """Results with ``start_ts <= timestamp < end_ts``, oldest first."""
        raise NotImplementedError

    def samples(
        self,
        start_ts: float,
        end_ts: float,
        *,
        target: str | None = None,
        provider: str | None = None,
        check: str | None = None,
    ) -> list[Sample]:
        """Raw results with ``start_ts <= ts < end_ts``, as ``Sample``s (unordered)."""
        raise NotImplementedError

    def rollup(self, until_ts: float) -> int:
        """Roll up every complete minute before ``until_ts`` not rolled up yet, and recompute
        minutes that received results since the last call. Idempotent; returns the number of
        minute rollup rows written."""
        raise NotImplementedError

    def rollup_watermark(self) -> float | None:
        """Minutes before this are rolled up (None before the first ``rollup``)."""
        raise NotImplementedError

    def summarize(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: GroupBy = None,
        step_s: int | None = None,
        target: str | None = None,
        provider: str | None = None,
        check: str | None = None,
    ) -> dict[str | int, Summary]:
        """Merged summaries of ``start_ts <= ts < end_ts``: rollups where complete, raw rows for
        the rest. Keyed by target, provider, bucket start (``group_by="bucket"``, aligned to
        multiples of ``step_s``) or ``""`` (``group_by=None``); groups without data are absent.
        """
        raise NotImplementedError

    def prune(
        self,
        now: float,
        raw_retention_s: float = RAW_RETENTION_S,
        rollup_retention_s: float = ROLLUP_RETENTION_S,
    ) -> PruneStats:
        """Roll up, then delete raw results and rollups older than their retention."""
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
