"""llmpulse: measure, monitor and route around LLM API failures.

The public API: load a config (or build targets), run checks, read ``CheckResult``s; route
in-process (``Router``) or measure an SDK client (``instrument``); label traffic for cost
attribution (``attributed``). Names load on first use (PEP 562), so ``llmpulse check`` does
not import the gateway or a database driver.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmpulse.attribution import attributed
    from llmpulse.config import Config, ConfigError, discover_targets, load_config
    from llmpulse.errors import ErrorClass, classify
    from llmpulse.gateway.client import Router, RouterError
    from llmpulse.instrumentation import instrument
    from llmpulse.probe import Prober, run_checks
    from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
    from llmpulse.store import ResultFilter, SQLiteStore, Store
    from llmpulse.target import Target

# Where each public name lives.
_HOMES = {
    "CheckKind": "llmpulse.result",
    "CheckResult": "llmpulse.result",
    "Config": "llmpulse.config",
    "ConfigError": "llmpulse.config",
    "ErrorClass": "llmpulse.errors",
    "Prober": "llmpulse.probe",
    "RateLimit": "llmpulse.result",
    "ResultFilter": "llmpulse.store",
    "Router": "llmpulse.gateway.client",
    "RouterError": "llmpulse.gateway.client",
    "SQLiteStore": "llmpulse.store",
    "Store": "llmpulse.store",
    "Target": "llmpulse.target",
    "Usage": "llmpulse.result",
    "attributed": "llmpulse.attribution",
    "classify": "llmpulse.errors",
    "discover_targets": "llmpulse.config",
    "instrument": "llmpulse.instrumentation",
    "load_config": "llmpulse.config",
    "run_checks": "llmpulse.probe",
}
__all__ = [
    "CheckKind",
    "CheckResult",
    "Config",
    "ConfigError",
    "ErrorClass",
    "Prober",
    "RateLimit",
    "ResultFilter",
    "Router",
    "RouterError",
    "SQLiteStore",
    "Store",
    "Target",
    "Usage",
    "attributed",
    "classify",
    "discover_targets",
    "instrument",
    "load_config",
    "run_checks",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        # A subpackage, as `import llmpulse` then `llmpulse.store.open_store` found it before.
        if importlib.util.find_spec(f"llmpulse.{name}") is None:
            raise AttributeError(f"module 'llmpulse' has no attribute {name!r}")
        return importlib.import_module(f"llmpulse.{name}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
