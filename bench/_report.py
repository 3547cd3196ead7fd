"""Benchmark output in the format of DESIGN.md "Benchmarks", shared by the bench scripts.

A script measures each phase with :class:`Meter` and prints the phases with :func:`report`:
human-readable lines first, then one JSON line per phase carrying at least ``bench``,
``phase``, ``agents``, ``events``, ``wall_s``, ``cpu_s``, ``peak_rss_mb``, ``requests``,
``requests_per_agent``, ``requests_per_changed_event`` and ``events_per_s``.

A bench with two change phases of different sizes (:func:`change_counts`) derives what a pass
costs from them with :func:`pass_cost`: a fixed CPU share per agent pass and a share per
changed event (issue 11's targets: at most 2 ms and 0.5 ms).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterable, Sequence
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


# Targets of a change pass: CPU per agent pass whatever changed, and per changed event.
TARGET_FIXED_MS = 2.0
TARGET_PER_CHANGE_MS = 0.5
CHANGE_PHASES = ("change_1pct", "change_5pct")


def change_counts(events: int) -> tuple[int, int]:
    """Events changed per agent in the two change phases: 1 % and 5 % of ``events``, the
    second at least five times the first (so that the fit below has two distinct points):
    1 and 5 for 20 events, 2 and 10 for 200."""
    first = max(1, events // 100)
    return first, min(events, max(5 * first, events * 5 // 100))


@dataclass(frozen=True, slots=True)
class PassCost:
    """CPU of a change pass split by a least-squares fit of
    ``cpu = fixed x agent passes + per_change x changed events`` over the change phases."""

    fixed_ms: float  # per agent pass, whatever changed
    per_change_ms: float  # per changed event (pushed or pulled)

    def extra(self) -> dict[str, Any]:
        """The fields added to the change phases' JSON lines."""
        return {
            "fixed_cpu_ms_per_pass": round(self.fixed_ms, 3),
            "cpu_ms_per_changed_event": round(self.per_change_ms, 3),
        }

    def notes(self) -> list[str]:
        def verdict(value: float, target: float) -> str:
            return "met" if value <= target else "MISSED"

        return [
            f"target fixed CPU per agent pass <= {TARGET_FIXED_MS:g} ms: {self.fixed_ms:.2f} ms "
            f"({verdict(self.fixed_ms, TARGET_FIXED_MS)})",
            f"target CPU per changed event <= {TARGET_PER_CHANGE_MS:g} ms: "
            f"{self.per_change_ms:.2f} ms ({verdict(self.per_change_ms, TARGET_PER_CHANGE_MS)})",
        ]


def fit_cost(points: Sequence[tuple[int, int, float]]) -> PassCost:
    """The least-squares :class:`PassCost` of two or more ``(passes, changed events, CPU
    seconds)`` measurements; ValueError when they cannot tell the two shares apart."""
    # Normal equations of cpu_ms = fixed * a + per_change * c.
    aa = sum(a * a for a, _, _ in points)
    ac = sum(a * c for a, c, _ in points)
    cc = sum(c * c for _, c, _ in points)
    ay = sum(a * cpu * 1000 for a, _, cpu in points)
    cy = sum(c * cpu * 1000 for _, c, cpu in points)
    det = aa * cc - ac * ac
    if len(points) < 2 or det <= 1e-9 * max(aa * cc, 1):
        raise ValueError("fit_cost: need measurements with different changes per pass")
    return PassCost((ay * cc - cy * ac) / det, (aa * cy - ac * ay) / det)


def fit_pass_cost(phases: Sequence[PhaseResult]) -> PassCost:
    """:func:`fit_cost` of phases, each ``agents`` passes over ``changed`` events."""
    return fit_cost([(p.agents, p.changed, p.cpu_s) for p in phases])


def pass_cost(phases: Sequence[PhaseResult], names: Sequence[str] = CHANGE_PHASES) -> list[str]:
    """Fit the change phases named ``names``, add the figures to their JSON lines and return
    the lines to print beside the other targets."""
    chosen = [p for p in phases if p.phase in names]
    cost = fit_pass_cost(chosen)
    for p in chosen:
        p.extra.update(cost.extra())
    return cost.notes()


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
