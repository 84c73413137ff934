"""Configuration: one tree of sections, each a module (raw settings -> resolved values), and
``load`` assembling them into one ``Config``. It holds settings only, never runtime objects.

Validation errors name the key path, the bad value and what is expected (``ConfigError``);
API keys are only ever referenced (``os.environ/NAME`` or ``${NAME}``) and resolved from the
environment at load time, never echoed in errors, logs or output.
"""

from llmpulse.config.errors import ConfigError
from llmpulse.config.load import (
    DEFAULT_CONFIG_PATH,
    Config,
    ServeOnly,
    load_config,
    parse_config,
    with_web,
)
from llmpulse.config.targets import discover_targets

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigError",
    "ServeOnly",
    "discover_targets",
    "load_config",
    "parse_config",
    "with_web",
]
