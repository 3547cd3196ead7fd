"""Benchmark output in the format of DESIGN.md "Benchmarks", shared by the bench scripts.

A script measures each phase with :class:`Meter` and prints the phases with :func:`report`:
human-readable lines first, then one JSON line per phase carrying at least ``bench``,
``phase``, ``agents``, ``events``, ``wall_s``, ``cpu_s``, ``peak_rss_mb``, ``requests``,
``requests_per_agent``, ``requests_per_changed_event`` and ``events_per_s``.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(slots=True)
class PhaseResult:
    """One measured phase. ``events`` is how many events the phase handled (for
    ``events_per_s``), ``changed`` how many it had to carry across (pushed or pulled)."""

    bench: str
    phase: str
    agents: int
    events: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    requests: int
    changed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "phase": self.phase,
            "agents": self.agents,
            "events": self.events,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "requests": self.requests,
            "requests_per_agent": round(self.requests / self.agents, 3) if self.agents else None,
            "requests_per_changed_event": (
                round(self.requests / self.changed, 4) if self.changed else None
            ),
            "events_per_s": round(self.events / self.wall_s, 1) if self.wall_s else None,
            **self.extra,
        }


class Meter:
    """Wall and CPU time of one phase: ``with Meter() as m: ...`` then ``m.wall_s``."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __enter__(self) -> Meter:
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = cpu_seconds() - self._cpu


def report(
    title: str, phases: Iterable[PhaseResult], out: TextIO, notes: Iterable[str] = ()
) -> None:
    """Print the human-readable summary, then one JSON line per phase."""
    phases = list(phases)
    print(title, file=out)
    for p in phases:
        r = p.record()
        per_changed = r["requests_per_changed_event"]
        print(
            f"  {p.phase:<12} {p.wall_s:8.2f} s wall {p.cpu_s:8.2f} s cpu "
            f"{p.peak_rss_mb:7.1f} MB peak  {p.requests:7d} requests "
            f"({r['requests_per_agent']} per agent"
            + (f", {per_changed} per changed event" if per_changed is not None else "")
            + f"), {r['events_per_s']} events/s",
            file=out,
        )
    for line in notes:
        print(f"  {line}", file=out)
    for p in phases:
        print(json.dumps(p.record(), ensure_ascii=False), file=out)
