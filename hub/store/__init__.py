"""Hub state storage: the :class:`Store` interface and its SQLite and PostgreSQL
implementations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.store.base import ChangeListener, ConstraintError, Store, StoreError, Tx

if TYPE_CHECKING:
    from hub.config import HubSettings


def is_server_url(database: str) -> bool:
    """Whether ``[hub] database`` names a database server (PostgreSQL) rather than a file."""
    return database.startswith(("postgresql://", "postgres://"))


def open_store(database: str, *, password: str | None = None, ca_file: str | None = None) -> Store:
    """The store ``database`` names (not yet opened: ``await store.open()``): a
    ``postgresql://`` URL, else the embedded SQLite file at that path."""
    if is_server_url(database):
        from hub.store.postgres import PgStore

        return PgStore(database, password=password, ca_file=ca_file)
    from hub.store.sqlite import SqliteStore

    return SqliteStore(database)


def hub_store(hub: HubSettings) -> Store:
    """The store of the ``[hub]`` settings, with their password and CA file."""
    return open_store(
        hub.database, password=hub.database_password, ca_file=hub.database_ca_file or None
    )


__all__ = [
    "ChangeListener",
    "ConstraintError",
    "Store",
    "StoreError",
    "Tx",
    "hub_store",
    "is_server_url",
    "open_store",
]
