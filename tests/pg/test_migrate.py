"""``calhub migrate --from calhub.db --to postgresql://...``: everything arrives, the counts
are verified, the copy is a working hub, and a target that is not empty is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.cli import main
from hub.model import (
    Agent,
    Appointment,
    CalendarState,
    Conflict,
    Kind,
    Request,
    SyncStatus,
)
from hub.store.outbox import OutboxMessage
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from tests import pgserver

AT = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


async def _sqlite_hub(path: Path) -> None:
    async with SqliteStore(path) as store, store.transaction("api") as tx:
        await tx.put_agent(Agent(id="alice", name="Alice", account="mem", feed_token="tok-a"))
        await tx.put_agent(Agent(id="bob", name="Bob", feed_token="tok-b"))
        await tx.put_request(Request(id="r1", subject="Printer"))
        for n in range(3):
            await tx.put_appointment(
                Appointment(
                    id=f"a{n}",
                    agent_id="alice",
                    kind=Kind.MANUAL,
                    start=AT,
                    end=AT,
                    request_id="r1",
                )
            )
        await tx.delete_appointment("a2")  # a tombstone
        await tx.put_status(SyncStatus("alice", "a0", "mem", "rem-0", "v1", "h", "h"))
        await tx.put_calendar_state(CalendarState("alice", "mem", cursor="cursor-7"))
        await tx.add_conflict(Conflict("c1", "alice", "a0", "mem", "newest", "hub", created_at=AT))
        await tx.put_agent_secret("alice", "mem", "refresh-token")
        await tx.add_message(
            OutboxMessage("created", "alice@example.com", "s", "t", "h", AT, "<m1@calhub>")
        )


async def test_migrate_copies_everything_and_verifies_it(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "calhub.db"
    await _sqlite_hub(db)
    monkeypatch.setenv(pgserver.PASSWORD_ENV, pgserver.PASSWORD)
    argv = ["migrate", "--from", str(db), "--to", pg_url, "--password-env", pgserver.PASSWORD_ENV]
    assert await _run(argv) == 0
    out = capsys.readouterr().out
    assert "appointments: 3 rows" in out and "audit: " in out
    assert "verified: the " in out
    async with SqliteStore(db) as old, PgStore(pg_url, password=pgserver.PASSWORD) as new:
        assert await new.list_agents() == await old.list_agents()
        assert await new.list_appointments(include_deleted=True) == await old.list_appointments(
            include_deleted=True
        )
        assert await new.list_status("alice", "mem") == await old.list_status("alice", "mem")
        assert await new.list_calendar_states() == await old.list_calendar_states()
        assert await new.list_audit(limit=1000) == await old.list_audit(limit=1000)
        assert await new.list_conflicts() == await old.list_conflicts()
        assert await new.list_messages() == await old.list_messages()
        assert await new.get_agent_secret("alice", "mem") == "refresh-token"
        for agent in ("alice", "bob"):
            assert await new.get_hub_seq(agent) == await old.get_hub_seq(agent)
        # A working hub: numbered keys continue after the copied ones.
        async with new.transaction("api") as tx:
            await tx.audit("agent", "alice", "note")
            message = await tx.add_message(
                OutboxMessage("created", "bob@example.com", "s", "t", "h", AT, "<m2@calhub>")
            )
        assert message.id == 2
    # Twice: the target is no longer empty.
    assert await _run(argv) == 2
    assert "already holds agents" in capsys.readouterr().err


async def test_migrate_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _run(["migrate", "--from", str(tmp_path / "none.db"), "--to", "x.db"]) == 2
    assert "expected a postgresql:// URL" in capsys.readouterr().err
    url = "postgresql://calhub@127.0.0.1:1/calhub"
    assert await _run(["migrate", "--from", str(tmp_path / "none.db"), "--to", url]) == 2
    assert "no such file" in capsys.readouterr().err


async def _run(argv: list[str]) -> int:
    # main() runs its own event loop: give it a thread of its own.
    import anyio.to_thread

    return await anyio.to_thread.run_sync(main, argv)
