"""Storage: one interface, SQLite by default."""

from llmpulse.store.base import PruneStats, Sample, Store
from llmpulse.store.rollup import Summary
from llmpulse.store.sqlite import SQLiteStore, default_path

__all__ = ["PruneStats", "SQLiteStore", "Sample", "Store", "Summary", "default_path"]
