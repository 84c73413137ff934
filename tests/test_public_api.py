"""The public API: every name of ``llmpulse.__all__`` imports from the top, as before the floor
plan, whatever was imported first."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llmpulse

BEFORE = {  # llmpulse.__all__ before the floor plan of issue 12: nothing was taken away
    "CheckKind", "CheckResult", "Config", "ConfigError", "ErrorClass", "Prober", "RateLimit",
    "Router", "RouterError", "SQLiteStore", "Store", "Target", "Usage", "classify",
    "discover_targets", "instrument", "load_config", "run_checks",
}  # fmt: skip


def test_every_public_name_is_there() -> None:
    assert set(llmpulse.__all__) >= BEFORE
    for name in llmpulse.__all__:
        assert getattr(llmpulse, name).__name__ == name
    with pytest.raises(AttributeError):
        _ = llmpulse.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize("first", ["llmpulse.instrumentation", "llmpulse.gateway.client", ""])
def test_names_resolve_whatever_was_imported_first(first: str) -> None:
    code = (
        (f"import {first}\n" if first else "")
        + "import llmpulse\nfrom llmpulse import *\n"
        + "assert callable(llmpulse.instrument) and llmpulse.instrument is instrument\n"
        + "assert llmpulse.Router is Router and Router.__module__ == 'llmpulse.gateway.client'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
