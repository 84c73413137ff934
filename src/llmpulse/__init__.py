"""llmpulse: measure, monitor and route around LLM API failures.

The public API: load a config (or build targets), run checks, read ``CheckResult``s.
"""

from llmpulse.config import Config, ConfigError, discover_targets, load_config
from llmpulse.errors import ErrorClass, classify
from llmpulse.gateway.client import Router, RouterError
from llmpulse.instrument import instrument
from llmpulse.probe import Prober, run_checks
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store import SQLiteStore, Store
from llmpulse.target import Target

__all__ = [
    "CheckKind",
    "CheckResult",
    "Config",
    "ConfigError",
    "ErrorClass",
    "Prober",
    "RateLimit",
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
