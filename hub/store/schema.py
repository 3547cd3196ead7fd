"""Versioned schema migrations of the SQLite store, tracked with ``PRAGMA user_version``.

:data:`MIGRATIONS` is append-only: migration *n* takes a database from version *n - 1* to *n*.
Each is applied in its own ``BEGIN IMMEDIATE`` transaction together with the new
``user_version`` (SQLite makes the pragma part of the transaction), so a failed step leaves
the database at the previous version, never in between. A database whose version is higher
than the last migration was written by a newer calhub and is refused rather than guessed at.

Never edit a shipped migration: add a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from hub.store.base import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the SQL statements that take version ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


INITIAL_SCHEMA = Migration(
    1,
    "initial schema",
    (
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL DEFAULT '',
            account TEXT,
            calendar TEXT NOT NULL DEFAULT '',
            create_appointments TEXT,
            import_external INTEGER,
            colour TEXT,
            feed_token TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT 'api',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            subject TEXT NOT NULL DEFAULT '',
            customer TEXT NOT NULL DEFAULT '',
            planned_start TEXT,
            estimate_minutes INTEGER,
            planned_agents TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT
        )""",
        """CREATE TABLE appointments (
            id TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            start TEXT NOT NULL,
            "end" TEXT NOT NULL,
            all_day INTEGER NOT NULL DEFAULT 0,
            start_utc TEXT NOT NULL,
            end_utc TEXT NOT NULL,
            subject TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            private INTEGER NOT NULL DEFAULT 0,
            show_as TEXT NOT NULL DEFAULT 'busy',
            request_id TEXT,
            group_id TEXT,
            action_id TEXT,
            push_state TEXT NOT NULL DEFAULT 'sync',
            subject_override TEXT,
            body_override TEXT,
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            deleted_at TEXT,
            origin TEXT NOT NULL DEFAULT 'api'
        )""",
        "CREATE INDEX appointments_agent_start ON appointments (agent_id, start_utc)",
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY,
            appointment_id TEXT NOT NULL REFERENCES appointments(id) ON DELETE CASCADE,
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            decided_at TEXT,
            approved INTEGER,
            decided_by TEXT NOT NULL DEFAULT ''
        )""",
        # Conflicts are history, like the audit log: they outlive the agent they concern.
        """CREATE TABLE conflicts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            agent_id TEXT NOT NULL,
            appointment_id TEXT NOT NULL,
            account TEXT NOT NULL,
            policy TEXT NOT NULL,
            winner TEXT NOT NULL,
            hub TEXT NOT NULL DEFAULT '{}',
            remote TEXT NOT NULL DEFAULT '{}',
            detail TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )""",
        # No foreign key to appointments: the engine records a pair before or after the hub
        # side exists (a create in flight, an external event not imported); purge removes them.
        """CREATE TABLE sync_status (
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            account TEXT NOT NULL,
            appointment_id TEXT NOT NULL,
            remote_id TEXT,
            remote_version TEXT,
            hub_hash TEXT,
            remote_hash TEXT,
            state TEXT NOT NULL DEFAULT 'synced',
            external INTEGER NOT NULL DEFAULT 0,
            series_id TEXT,
            start TEXT,
            "end" TEXT,
            updated_at TEXT,
            PRIMARY KEY (agent_id, account, appointment_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE calendar_state (
            agent_id TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
            account TEXT NOT NULL,
            calendar TEXT NOT NULL DEFAULT '',
            cursor TEXT,
            cursor_at TEXT,
            last_pass_at TEXT,
            last_result TEXT,
            last_error TEXT,
            needs_attention INTEGER NOT NULL DEFAULT 0,
            allow_empty_once INTEGER NOT NULL DEFAULT 0,
            notices TEXT NOT NULL DEFAULT '[]',
            stats TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            origin TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
    ),
)

LOOKUP_INDEXES = Migration(
    2,
    "indexes for the lookups by request, group, appointment and feed token; unique feed tokens",
    (
        # Rules A and C find a request's and a booking's entries; purge and the engine find
        # the status rows of one appointment; the feed route finds an agent by its token;
        # the audit view pages through one entity's history. Version 1 scanned for each.
        "CREATE INDEX appointments_request ON appointments (request_id)"
        " WHERE request_id IS NOT NULL",
        "CREATE INDEX appointments_group ON appointments (group_id) WHERE group_id IS NOT NULL",
        "CREATE INDEX sync_status_appointment ON sync_status (appointment_id)",
        "CREATE INDEX audit_entity ON audit (entity_id, id)",
        # A token shared by two agents would serve one agent's calendar to the other's
        # subscribers: clear duplicates (the API issues a fresh token for an empty one), then
        # make the token unique.
        """UPDATE agents SET feed_token = '' WHERE feed_token IN (
            SELECT feed_token FROM agents WHERE feed_token <> ''
            GROUP BY feed_token HAVING COUNT(*) > 1
        )""",
        "CREATE UNIQUE INDEX agents_feed_token ON agents (feed_token) WHERE feed_token <> ''",
    ),
)


def _bumps(table: str, agents: str) -> tuple[str, ...]:
    """Triggers adding one to ``hub_seq`` of the agents the query ``agents`` selects (its
    ``{row}`` is NEW or OLD) after every insert, update and delete of a row of ``table``."""
    old, new = agents.format(row="OLD"), agents.format(row="NEW")
    return tuple(
        f"CREATE TRIGGER hub_seq_{table}_{event.lower()} AFTER {event} ON {table} BEGIN"
        f" UPDATE agents SET hub_seq = hub_seq + 1 WHERE id IN ({which}); END"
        for event, which in (("INSERT", new), ("UPDATE", f"{old} UNION {new}"), ("DELETE", old))
    )


HUB_SEQ = Migration(
    3,
    "agents.hub_seq: a counter of the changes that concern an agent's calendar",
    (
        # The sync engine skips reading an unchanged calendar when this counter still has
        # the value its last clean pass saw. Triggers rather than code in the store, so that
        # no write path (a new store method, an operator's SQL) can forget to bump it; the
        # bump commits or rolls back with the change itself.
        "ALTER TABLE agents ADD COLUMN hub_seq INTEGER NOT NULL DEFAULT 0",
        # The agent record itself (its hub_seq excepted: that update is the trigger's own).
        "CREATE TRIGGER hub_seq_agents_update AFTER UPDATE ON agents"
        " WHEN NEW.hub_seq IS OLD.hub_seq BEGIN"
        " UPDATE agents SET hub_seq = hub_seq + 1 WHERE id = NEW.id; END",
        *_bumps("appointments", "SELECT {row}.agent_id"),
        *_bumps("approvals", "SELECT {row}.agent_id"),
        # The engine's own bookkeeping: a lost or edited status row must be seen too.
        *_bumps("sync_status", "SELECT {row}.agent_id"),
        # A request's subject and customer feed the templates of its appointments.
        *_bumps("requests", "SELECT agent_id FROM appointments WHERE request_id = {row}.id"),
    ),
)

RETENTION_INDEXES = Migration(
    4,
    "indexes on the time of audit entries and conflicts, for retention",
    (
        # Housekeeping deletes the history older than the retention every day; without these
        # each run scans both tables whole.
        "CREATE INDEX audit_at ON audit (at)",
        "CREATE INDEX conflicts_created_at ON conflicts (created_at)",
    ),
)

OUTBOX = Migration(
    5,
    "e-mail outbox (appointment copies, alerts) and the attention state last alerted",
    (
        # No foreign keys: a message outlives the appointment or agent it is about (a
        # cancellation copy is sent after the tombstone was purged).
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            recipient TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            html TEXT NOT NULL,
            ics TEXT NOT NULL DEFAULT '',
            message_id TEXT NOT NULL UNIQUE,
            appointment_id TEXT,
            agent_id TEXT,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            not_before TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT
        )""",
        "CREATE INDEX outbox_due ON outbox (state, not_before)",
        "CREATE INDEX outbox_appointment ON outbox (appointment_id, recipient)",
        """CREATE TABLE attention_marks (
            subject TEXT PRIMARY KEY,
            needs_attention INTEGER NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            changed_at TEXT NOT NULL
        )""",
    ),
)

BROWSER_SESSIONS = Migration(
    6,
    "browser sessions of the central calendar page, keyed by the hash of their id",
    (
        # Only a hash of the session id is kept: a copy of the database (a backup, a support
        # bundle) must not let anyone into the calendar page.
        """CREATE TABLE browser_sessions (
            id_hash TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            seen_at TEXT NOT NULL
        )""",
        "CREATE INDEX browser_sessions_seen_at ON browser_sessions (seen_at)",
    ),
)

AGENT_SECRETS = Migration(
    7,
    "agent_secrets: per-agent provider secrets (OAuth refresh tokens from calhub authorize)",
    (
        # Kept apart from calendar_state so that no status route, export or log of a state
        # row can carry a secret; the agent's secrets go with the agent.
        """CREATE TABLE agent_secrets (
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            account TEXT NOT NULL,
            secret TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (agent_id, account)
        ) WITHOUT ROWID""",
    ),
)

RELAY_TOKENS = Migration(
    8,
    "relay_tokens: the hash of each agent's Outlook-agent token",
    (
        # Only a hash: a copied database must not open anyone's relay. One row per agent and
        # kind of agent program; deleting the agent deletes its tokens.
        """CREATE TABLE relay_tokens (
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            issued_at TEXT NOT NULL,
            PRIMARY KEY (agent_id, kind)
        )""",
    ),
)

APPOINTMENT_PAGES = Migration(
    9,
    "indexes in the order appointments are listed: (agent, start, id) and (start, id)",
    (
        # GET /appointments pages by (start, id) from a cursor, of one agent or of all; with
        # the id in the index a page is a range scan that stops after its limit, where
        # version 1's (agent_id, start_utc) sorted every entry sharing a start, and a listing
        # of all agents sorted the whole table.
        "CREATE INDEX appointments_agent_start_id ON appointments (agent_id, start_utc, id)",
        "CREATE INDEX appointments_start_id ON appointments (start_utc, id)",
        # Its prefix is the new index: two indexes of the same keys only slow every write.
        "DROP INDEX appointments_agent_start",
    ),
)


def _stamp(agent: str, appointment: str, when: str = "") -> str:
    """Raise the counter of ``agent`` and stamp ``appointment`` with the value it now has
    (only where the condition ``when`` holds, if one is given)."""
    cond = f" AND ({when})" if when else ""
    return (
        f"UPDATE agents SET hub_seq = hub_seq + 1 WHERE id = {agent}{cond};"
        " INSERT INTO hub_changes (agent_id, appointment_id, seq)"
        f" SELECT id, {appointment}, hub_seq FROM agents WHERE id = {agent}{cond}"
        " ON CONFLICT (agent_id, appointment_id) DO UPDATE SET seq = excluded.seq;"
    )


def _stamps(table: str, appointment: str) -> tuple[str, ...]:
    """Triggers of ``table`` (a row names its agent and, in column ``appointment``, an
    appointment) that replace version 3's bare counter: the row's agent is raised and the
    appointment stamped; an update that moves the row to another agent or appointment does
    so for the old one too."""
    moved = f"OLD.agent_id IS NOT NEW.agent_id OR OLD.{appointment} IS NOT NEW.{appointment}"
    old = _stamp("OLD.agent_id", f"OLD.{appointment}")
    new = _stamp("NEW.agent_id", f"NEW.{appointment}")
    bodies = {
        "INSERT": new,
        "UPDATE": _stamp("OLD.agent_id", f"OLD.{appointment}", moved) + " " + new,
        "DELETE": old,
    }
    return tuple(
        statement
        for event, body in bodies.items()
        for statement in (
            f"DROP TRIGGER hub_seq_{table}_{event.lower()}",
            f"CREATE TRIGGER hub_seq_{table}_{event.lower()} AFTER {event} ON {table}"
            f" BEGIN {body} END",
        )
    )


def _request_stamps() -> tuple[str, ...]:
    """The requests' triggers: every appointment of the request, old and new, is stamped."""

    def stamp(row: str) -> str:
        where = f"a.request_id = {row}.id"
        return (
            "UPDATE agents SET hub_seq = hub_seq + 1 WHERE id IN"
            f" (SELECT agent_id FROM appointments a WHERE {where});"
            " INSERT INTO hub_changes (agent_id, appointment_id, seq)"
            f" SELECT a.agent_id, a.id, g.hub_seq FROM appointments a, agents g"
            f" WHERE g.id = a.agent_id AND {where}"
            " ON CONFLICT (agent_id, appointment_id) DO UPDATE SET seq = excluded.seq;"
        )

    bodies = {"INSERT": stamp("NEW"), "UPDATE": stamp("OLD") + " " + stamp("NEW")}
    bodies["DELETE"] = stamp("OLD")
    return tuple(
        statement
        for event, body in bodies.items()
        for statement in (
            f"DROP TRIGGER hub_seq_requests_{event.lower()}",
            f"CREATE TRIGGER hub_seq_requests_{event.lower()} AFTER {event} ON requests"
            f" BEGIN {body} END",
        )
    )


HUB_CHANGES_TABLE = """CREATE TABLE hub_changes (
            agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
            appointment_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (agent_id, appointment_id)
        ) WITHOUT ROWID"""

# Every appointment an agent's calendar has or had a pair for, stamped with the agent's
# counter as it is now: what a database upgraded (or copied) to version 10 starts from. A
# pass whose last clean pass saw an older counter then reads them all, as before version 10;
# one that saw this value reads none.
RESTAMP_ALL = """INSERT INTO hub_changes (agent_id, appointment_id, seq)
    SELECT g.id, x.appointment_id, g.hub_seq FROM agents g, (
        SELECT agent_id, id AS appointment_id FROM appointments
        UNION SELECT agent_id, appointment_id FROM sync_status
        UNION SELECT agent_id, appointment_id FROM approvals
    ) x WHERE x.agent_id = g.id
    ON CONFLICT (agent_id, appointment_id) DO UPDATE SET seq = excluded.seq"""

HUB_CHANGES = Migration(
    10,
    "hub_changes: the hub_seq at which each appointment of an agent's calendar last changed",
    (
        # A change pass reads only what changed since the agent's last clean pass (the
        # stamps above the hub_seq it recorded) instead of the whole calendar. Written by the
        # same triggers that raise the counter, so every write path stamps (the same reason
        # as version 3); a stamp outlives a purged appointment, so its pair is still found.
        HUB_CHANGES_TABLE,
        "CREATE INDEX hub_changes_seq ON hub_changes (agent_id, seq)",
        # The pass finds the pairs of the remote events a delta reported by remote id.
        "CREATE INDEX sync_status_remote ON sync_status (agent_id, account, remote_id)",
        *_stamps("appointments", "id"),
        *_stamps("approvals", "appointment_id"),
        *_stamps("sync_status", "appointment_id"),
        *_request_stamps(),
        RESTAMP_ALL,
    ),
)

APPOINTMENT_SPANS = Migration(
    11,
    "the agent's list index carries each entry's end and deleted flag",
    (
        # A window's query (ends after its start, starts before its end, not deleted) scans
        # the agent's index from its first entry up to the window's end: with the end and
        # the flag in the index it tests them there, and reads the table only for the rows
        # it returns (a week of a 10,000-entry calendar: 3.6 -> 1.7 ms). It replaces
        # version 9's index of the same prefix, so writes keep the same number of indexes.
        "CREATE INDEX appointments_agent_span"
        " ON appointments (agent_id, start_utc, id, end_utc, deleted)",
        "DROP INDEX appointments_agent_start_id",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    INITIAL_SCHEMA,
    LOOKUP_INDEXES,
    HUB_SEQ,
    RETENTION_INDEXES,
    OUTBOX,
    BROWSER_SESSIONS,
    AGENT_SECRETS,
    RELAY_TOKENS,
    APPOINTMENT_PAGES,
    HUB_CHANGES,
    APPOINTMENT_SPANS,
)
CURRENT_VERSION = MIGRATIONS[-1].version


async def user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(
    db: aiosqlite.Connection, where: str, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the database on ``db`` (autocommit mode) to the last of ``migrations``.

    Returns the version found before migrating. Raises :class:`StoreError` for a database
    newer than the migrations know, or when a step fails (that step is rolled back, the steps
    before it stay applied).
    """
    latest = migrations[-1].version
    found = await user_version(db)
    _refuse_newer(found, latest, where)
    for step in migrations:
        if step.version <= found:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated between our read and our lock.
            current = await user_version(db)
            _refuse_newer(current, latest, where)
            if current == 0 and await _has_tables(db):
                # Version 0 with tables in it: another program's database, not a new one.
                raise StoreError(
                    f"{where}: not a calhub database (it has tables but no calhub schema)"
                )
            if current < step.version:
                for statement in step.statements:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {step.version:d}")
            await db.commit()
        except BaseException as exc:
            await db.rollback()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"{where}: schema migration {step.version} ({step.description}) failed: {exc}"
                ) from exc
            raise
    return found


async def _has_tables(db: aiosqlite.Connection) -> bool:
    rows = list(await db.execute_fetchall("SELECT 1 FROM sqlite_master LIMIT 1"))
    return bool(rows)


def _refuse_newer(found: int, latest: int, where: str) -> None:
    if found > latest:
        raise StoreError(
            f"{where}: database schema version {found} is newer than this calhub supports "
            f"({latest}); upgrade calhub or use another database file"
        )
