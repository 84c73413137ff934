"""Storage: one interface, SQLite by default."""

from llmpulse.store.base import ModelChange, PruneStats, Store, Totals
from llmpulse.store.rollup import Summary
from llmpulse.store.sqlite import SQLiteStore, default_path

__all__ = [
    "ModelChange",
    "PruneStats",
    "SQLiteStore",
    "Store",
    "Summary",
    "Totals",
    "default_path",
]
