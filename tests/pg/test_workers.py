"""Several real ``calhub serve`` workers on one PostgreSQL database: agents spread by lease,
taken over after kill -9, fenced after SIGSTOP, and API writes on one worker synced by another.
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests import pgserver
from tests.pg.workers import Worker, eventually, remote_events, start, stop, write_config

pytestmark = pytest.mark.usefixtures("pg_server")


def book(worker: Worker, request_id: str, agent: str, subject: str) -> str:
    status, body = worker.api(
        "POST",
        f"/requests/{request_id}/appointments",
        {
            "subject": subject,
            "start": "2026-12-02T09:00:00+00:00",
            "end": "2026-12-02T10:00:00+00:00",
            "agents": [agent],
        },
    )
    assert status == 201, body
    return str(body[0]["id"]) if isinstance(body, list) else str(body["appointments"][0]["id"])


def holders(worker: Worker, agents: list[str]) -> dict[str, str | None]:
    return {a: worker.holder(a) for a in agents}


def spread(worker: Worker, agents: list[str], workers: int) -> dict[str, str] | None:
    """The holders, once every agent has one and the workers share them evenly."""
    found = holders(worker, agents)
    counts = collections.Counter(found.values())
    if None in counts or len(counts) != workers:
        return None
    if max(counts.values()) - min(counts.values()) > 1:
        return None
    return {a: str(h) for a, h in found.items()}


def synced(tmp: Path, agent: str, appointment_ids: set[str]) -> bool:
    """The agent's calendar holds exactly these hub appointments, each once."""
    hub_ids = [e["hub_id"] for e in remote_events(tmp, agent) if e["hub_id"]]
    return sorted(hub_ids) == sorted(appointment_ids)


def test_three_workers_share_the_agents_and_take_over_a_killed_one(
    tmp_path: Path, pg_url: str
) -> None:
    agents = [f"agent{n}" for n in range(6)]
    config = write_config(tmp_path, pg_url, agents, latency_ms=150)
    workers = [start(tmp_path, config, f"w{n}") for n in range(3)]
    try:
        first = eventually(lambda: spread(workers[0], agents, 3), what="an even spread")
        by_name = {w.process.pid: w for w in workers}
        victim = workers[1]
        victims = [a for a, h in first.items() if f":{victim.process.pid}:" in h]
        assert len(victims) == 2, first
        # A booking for each of the victim's agents, then kill -9 while its passes run.
        booked = {a: book(victim, f"r-{a}", a, f"kill test {a}") for a in victims}
        time.sleep(0.5)  # into the debounce and the first slow request
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        survivors = [w for w in workers if w is not victim]
        after = eventually(
            lambda: spread(survivors[0], agents, 2), what="the survivors to take over"
        )
        assert not any(f":{victim.process.pid}:" in h for h in after.values())
        # An edit made after the kill, on another worker, is not lost either.
        edited = victims[0]
        status, body = survivors[1].api(
            "PATCH", f"/appointments/{booked[edited]}", {"note": "after the kill"}
        )
        assert status == 200, body
        for agent, appointment_id in booked.items():
            eventually(
                lambda a=agent, i=appointment_id: synced(tmp_path, a, {i}),
                what=f"{agent}'s booking on its calendar exactly once",
            )
        eventually(
            lambda: any(
                "after the kill" in e["data"]["body"] for e in remote_events(tmp_path, edited)
            ),
            what="the edit made after the kill to reach the calendar",
        )
        assert synced(tmp_path, edited, {booked[edited]})  # still once
        assert by_name  # every worker was a real process with its own pid
    finally:
        for worker in workers:
            stop(worker)


def test_a_worker_paused_past_its_lease_commits_nothing_when_it_resumes(
    tmp_path: Path, pg_url: str
) -> None:
    config = write_config(tmp_path, pg_url, ["solo"], latency_ms=800)
    one = start(tmp_path, config, "one")
    two = start(tmp_path, config, "two")
    try:
        eventually(lambda: one.holder("solo"), what="a holder")
        holder, other = (
            (one, two) if f":{one.process.pid}:" in (one.holder("solo") or "") else (two, one)
        )  # type: ignore[union-attr]
        appointment_id = book(holder, "r-pause", "solo", "pause test")
        time.sleep(0.6)  # past the debounce: the pass is in its first slow request
        holder.process.send_signal(signal.SIGSTOP)
        try:
            eventually(
                lambda: f":{other.process.pid}:" in (other.holder("solo") or ""),
                what="the other worker to take the lease over",
            )
            eventually(
                lambda: synced(tmp_path, "solo", {appointment_id}),
                what="the new holder to sync the booking",
            )
            status, body = other.api(
                "PATCH", f"/appointments/{appointment_id}", {"note": "newer than the pause"}
            )
            assert status == 200, body
            eventually(
                lambda: any(
                    "newer than the pause" in e["data"]["body"]
                    for e in remote_events(tmp_path, "solo")
                ),
                what="the edit to reach the calendar",
            )
        finally:
            holder.process.send_signal(signal.SIGCONT)
        eventually(
            lambda: "committed nothing" in holder.log(),
            what="the resumed worker's pass to find its lease lost",
        )
        time.sleep(1.0)  # let anything the resumed worker still had in flight land
        status, appt = other.api("GET", f"/appointments/{appointment_id}")
        assert status == 200 and appt["note"] == "newer than the pause", appt
        eventually(
            lambda: (
                synced(tmp_path, "solo", {appointment_id})
                and any(
                    "newer than the pause" in e["data"]["body"]
                    for e in remote_events(tmp_path, "solo")
                )
            ),
            what="the calendar to keep the newer edit, once",
        )
    finally:
        stop(one)
        stop(two)


def test_a_burst_of_writes_on_one_worker_syncs_on_the_holder(tmp_path: Path, pg_url: str) -> None:
    config = write_config(tmp_path, pg_url, ["busy"], latency_ms=20, lease="20s")
    one = start(tmp_path, config, "one")
    two = start(tmp_path, config, "two")
    try:
        eventually(lambda: one.holder("busy"), what="a holder")
        holder, other = (
            (one, two) if f":{one.process.pid}:" in (one.holder("busy") or "") else (two, one)
        )
        before = holder.passes()
        booked = {book(other, f"r-burst-{n}", "busy", f"burst {n}") for n in range(10)}
        eventually(lambda: synced(tmp_path, "busy", booked), what="the burst on the calendar")
        # The events reach the calendar during the pass; its count rises when the pass ends.
        eventually(lambda: holder.passes() > before, what="the holder to count its pass")
        assert other.passes() == 0  # ...and the worker that took the writes ran none
    finally:
        stop(one)
        stop(two)


def test_a_clean_stop_gives_the_leases_back(tmp_path: Path, pg_url: str) -> None:
    # A long lease: only the release on stop can free the agent before the test ends.
    config = write_config(tmp_path, pg_url, ["alice", "bob"], lease="10m")
    worker = start(tmp_path, config, "one")
    try:
        eventually(lambda: worker.holder("alice") and worker.holder("bob"), what="holders")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=30) == 0, worker.log()
        with psycopg.connect(pg_url, password=pgserver.PASSWORD) as conn:
            rows = conn.execute("SELECT agent_id, holder FROM agent_leases").fetchall()
            workers = conn.execute("SELECT count(*) FROM calhub_workers").fetchone()
        assert sorted(rows) == [("alice", None), ("bob", None)]
        assert workers == (0,)
    finally:
        stop(worker)
