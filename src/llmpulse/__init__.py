"""llmpulse: measure, monitor and route around LLM API failures.

The public API: load a config (or build targets), run checks, read ``CheckResult``s.
"""

from llmpulse.config import Config, ConfigError, Target, discover_targets, load_config
from llmpulse.errors import ErrorClass, classify
from llmpulse.gateway.instrument import instrument
from llmpulse.gateway.router import Router, RouterError
from llmpulse.probe import Prober, run_checks
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store import ResultFilter, SQLiteStore, Store

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
    "classify",
    "discover_targets",
    "instrument",
    "load_config",
    "run_checks",
]
