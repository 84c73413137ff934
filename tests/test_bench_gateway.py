"""The gateway bench's runs: what each measured gateway is sent (the bench itself times)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.gateway_vs_litellm import gateway_runs


def test_the_two_worker_run_sends_what_the_plain_run_does() -> None:
    plain_config, limited_config = Path("plain.yaml"), Path("limits.yaml")
    runs = {run.name: run for run in gateway_runs(plain_config, "k1", limited_config, "k2", True)}
    assert list(runs) == ["llmpulse", "limits", "workers"]
    plain, workers = runs["llmpulse"], runs["workers"]
    # Compared with the one-worker run: the same config, key and headers, only the flag added.
    assert workers.flags == ("--num_workers", "2") and plain.flags == ()
    same = ("config", "key", "attribution")
    assert [getattr(workers, f) for f in same] == [getattr(plain, f) for f in same]
    assert not plain.attribution and runs["limits"].attribution
    assert dataclasses.replace(workers, name="llmpulse", title=plain.title, flags=()) == plain
    assert [run.name for run in gateway_runs(plain_config, "k1", limited_config, "k2", False)] == [
        "llmpulse",
        "limits",
    ]
