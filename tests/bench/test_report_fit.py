"""The benches' change-pass fit (bench/_report.py): it recovers the fixed and per-change CPU
of known measurements, and the change phases always have two distinct sizes to fit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_report.py"
_spec = importlib.util.spec_from_file_location("bench_report", _PATH)
assert _spec is not None and _spec.loader is not None
report = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = report  # dataclasses look their module up by name
_spec.loader.exec_module(report)


def phase(name: str, agents: int, changed: int, cpu_s: float) -> object:
    return report.PhaseResult("b", name, agents, changed, 1.0, cpu_s, 1.0, agents, changed)


def test_fit_recovers_fixed_and_per_change_cost() -> None:
    # 3 ms per pass and 0.4 ms per changed event, 1,000 passes with 1 and 5 changes each.
    phases = [phase("change_1pct", 1000, 1000, 3.4), phase("change_5pct", 1000, 5000, 5.0)]
    notes = report.pass_cost(phases)
    assert phases[0].record()["fixed_cpu_ms_per_pass"] == pytest.approx(3.0)
    assert phases[1].record()["cpu_ms_per_changed_event"] == pytest.approx(0.4)
    assert notes == [
        "target fixed CPU per agent pass <= 2 ms: 3.00 ms (MISSED)",
        "target CPU per changed event <= 0.5 ms: 0.40 ms (met)",
    ]


def test_fit_uses_only_the_change_phases() -> None:
    phases = [
        phase("initial", 10, 200, 9.0),
        phase("change_1pct", 10, 10, 0.01 + 0.0025),
        phase("change_5pct", 10, 50, 0.01 + 0.0125),
    ]
    cost = report.fit_pass_cost([p for p in phases if p.phase.startswith("change")])
    report.pass_cost(phases)
    assert (cost.fixed_ms, cost.per_change_ms) == (pytest.approx(1.0), pytest.approx(0.25))
    assert "fixed_cpu_ms_per_pass" not in phases[0].record()


def test_fit_refuses_phases_of_one_size() -> None:
    with pytest.raises(ValueError, match="different changes"):
        report.fit_cost([(100, 100, 1.0), (100, 100, 1.1)])


@pytest.mark.parametrize("events", [1, 4, 20, 99, 100, 200, 10_000])
def test_second_change_phase_is_at_least_five_times_the_first(events: int) -> None:
    first, second = report.change_counts(events)
    assert 1 <= first <= second <= events
    assert second >= min(events, 5 * first)
    assert (report.change_counts(20), report.change_counts(200)) == ((1, 5), (2, 10))
