"""Hub state storage: the :class:`Store` interface and its SQLite implementation."""

from hub.store.base import ChangeListener, ConstraintError, Store, StoreError, Tx


def open_store(path: str) -> Store:
    """The embedded SQLite store at ``path`` (not yet opened: ``await store.open()``)."""
    from hub.store.sqlite import SqliteStore

    return SqliteStore(path)


__all__ = ["ChangeListener", "ConstraintError", "Store", "StoreError", "Tx", "open_store"]
