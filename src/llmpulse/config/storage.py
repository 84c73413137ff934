"""The ``storage`` key: a SQLite path or ``sqlite:///`` URL, or a ``postgresql://`` URL."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from llmpulse.config.errors import ConfigError

# Overrides the config's storage key (a URL with a password stays out of the file).
STORAGE_ENV = "LLMPULSE_STORAGE_URL"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
# user:password@ in a URL, also inside an error message quoting it.
_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def is_postgres(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(_POSTGRES_SCHEMES)


def sqlite_path(location: str | Path) -> Path:
    """The file of a path or ``sqlite:///`` URL (``sqlite:////abs`` or ``sqlite:///rel``)."""
    text = str(location)
    if text.startswith("sqlite:///"):
        return Path(text.removeprefix("sqlite:///"))
    if "://" in text:
        raise ValueError(
            f"unsupported storage {redact_url(text)!r}: expected a file path, "
            "sqlite:///PATH or postgresql://USER@HOST/DATABASE"
        )
    return Path(text).expanduser()


def check_location(location: str) -> None:
    """Raise ValueError (naming what is expected) unless ``location`` is one of the above."""
    if not location.strip():
        raise ValueError("empty: expected a file path or a postgresql:// URL")
    if not is_postgres(location):
        sqlite_path(location)


def redact_url(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***``."""
    return _PASSWORD.sub(r"\1:***@", text)


def sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy's psycopg 3 dialect (its default PostgreSQL driver is psycopg2)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def resolve_storage(value: str | None, env: Mapping[str, str], where: str = "") -> str | None:
    """Where results live: $LLMPULSE_STORAGE_URL over the ``storage`` key (a file path,
    sqlite:///PATH or postgresql://...), validated; None for the default SQLite file."""
    for name, location in ((STORAGE_ENV, env.get(STORAGE_ENV)), (f"{where}storage", value)):
        if location is None or (name == STORAGE_ENV and not location):
            continue
        try:
            check_location(location)
        except ValueError as exc:
            raise ConfigError(f"{name}: {redact_url(str(exc))}") from None
        return location
    return None


def default_path() -> Path:
    """``$LLMPULSE_DB``, else ``$XDG_DATA_HOME/llmpulse/llmpulse.db``."""
    if os.environ.get("LLMPULSE_DB"):
        return Path(os.environ["LLMPULSE_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmpulse" / "llmpulse.db"


def results_location(db_path: str | Path | None, storage: str | None) -> str | Path:
    """Where results live: ``--db``, else the config's storage, else the default file."""
    return db_path or storage or default_path()
