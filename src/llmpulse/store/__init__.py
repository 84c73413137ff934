"""Storage: one interface, SQLite by default."""

from llmpulse.store.base import Store
from llmpulse.store.sqlite import SQLiteStore, default_path

__all__ = ["SQLiteStore", "Store", "default_path"]
