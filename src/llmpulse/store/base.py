"""The storage interface. SQLite is the zero-setup default; other backends implement the same."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from llmpulse.result import CheckResult


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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
