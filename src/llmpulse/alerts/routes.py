"""Where an alert goes: ``alerting.routes`` turned into notifier names, as Alertmanager routes.

Routes are tried in order on an alert's labels (severity, provider, target, rule; a failover
path's alert also has group, path and deployment; each key of
a route's ``match`` is a glob or a list of globs, and every key given must match). The first
route that matches takes the alert; if it says ``continue``, the next matching route takes it
too. Without ``routes`` every notifier gets every alert, and nothing escalates.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence

from llmpulse.config.alerting import RouteConfig, RouteMatch

LABELS = ("severity", "provider", "target", "rule", "group", "path", "deployment")


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """An escalation step: who is paged when the alert is still unacknowledged ``after_s``
    after its first page."""

    after_s: float
    notify: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """Who one alert pages first, and the escalation steps after (in order of ``after_s``)."""

    notify: tuple[str, ...]
    escalate: tuple[Step, ...] = ()


class Routes:
    def __init__(self, routes: Sequence[RouteConfig] | None, notifiers: Sequence[str]) -> None:
        """``notifiers``: every configured notifier's name, which an alert reaches when there
        are no ``routes``. Route names were checked against them when the config loaded."""
        self._routes = None if routes is None else tuple(routes)
        self._everyone = Delivery(tuple(notifiers))

    def delivery(self, labels: Mapping[str, str]) -> Delivery:
        if self._routes is None:
            return self._everyone
        notify: dict[str, None] = {}
        steps: list[Step] = []
        for route in self._routes:
            if not matches(route.match, labels):
                continue
            notify.update(dict.fromkeys(route.notify))
            steps += [Step(s.after, tuple(s.notify)) for s in route.escalate]
            if not route.continue_:
                break
        return Delivery(tuple(notify), tuple(sorted(steps, key=lambda s: s.after_s)))


def matches(match: RouteMatch, labels: Mapping[str, str]) -> bool:
    for key in LABELS:
        globs: list[str] | None = getattr(match, key)
        if globs is not None and not any(
            fnmatch.fnmatchcase(labels.get(key, ""), g) for g in globs
        ):
            return False
    return True
