"""Who a traffic request is for: the gateway key and its team, the end user, tags and session.

One ``Owner`` per request, stamped on its traffic ``CheckResult`` (``Owner.stamp``) by the
gateway and by ``instrument()``/``Router``; the store, budgets and cost reports read it there.
"""

from __future__ import annotations

import dataclasses

from llmpulse.result import CheckResult


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    key_name: str | None = None
    team: str | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()
    session: str | None = None

    def stamp(self, result: CheckResult) -> None:
        result.key_name, result.team = self.key_name, self.team
        result.user, result.tags, result.session = self.user, list(self.tags), self.session


NOBODY = Owner()
