"""Mutation testing of the sync engine, the admin auth and the providers' write paths (mutmut 3).

A developer command, not part of CI (a full run takes hours on 2 cores)::

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python tools/mutation.py                   # every target, one after the other
    .venv/bin/python tools/mutation.py reconcile sync    # some targets
    .venv/bin/python tools/mutation.py --list            # the targets and their tests

Each target mutates some modules (or the write-path functions of a provider) and runs only the
tests that exercise it, in a scratch copy under ``.mutation/<target>/`` (so targets can run
side by side and the work tree is never touched). mutmut runs, for each mutant, the tests of
that subset that call the mutated function. The summary prints the kill ratio per module and
one JSON line per module; survivors are listed in ``.mutation/<target>/survivors.txt``, and
``cd .mutation/<target> && ../../.venv/bin/mutmut show NAME`` shows one.

Killed counts mutants a test failed on; a timeout counts as killed (the mutant made a test
hang); "no tests" means no test of the subset calls that function at all.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
SYNC_TESTS = (
    "tests/sync/test_sync_basic.py",
    "tests/sync/test_sync_conflicts.py",
    "tests/sync/test_sync_faults.py",
    "tests/sync/test_sync_quiet.py",
    "tests/sync/test_sync_rules.py",
)


@dataclass(frozen=True)
class Target:
    """One module (or some of its functions) and the tests that exercise it."""

    name: str
    modules: tuple[str, ...]  # paths of the files to mutate
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # mutant name globs (of a one-module target); empty: all

    def globs(self) -> list[str]:
        dotted = [m.removesuffix(".py").replace("/", ".") for m in self.modules]
        if not self.functions:
            return [f"{d}.*" for d in dotted]
        return [f"{d}.{f}__mutmut_*" for d in dotted for f in self.functions]


TARGETS = (
    Target("auth", ("hub/admin/auth.py",), ("tests/core",)),
    Target("scheduler", ("hub/scheduler.py",), ("tests/sync/test_scheduler.py",)),
    Target(
        "graph-write",
        ("plugins/graph365/batch.py",),
        ("tests/graph/test_graph_batch.py", "tests/graph/test_graph_sync.py"),
    ),
    Target(
        "graph-provider-write",
        ("plugins/graph365/provider.py",),
        ("tests/graph",),
        ("xǁGraphProviderǁpush", "xǁGraphProviderǁdelete", "xǁGraphProviderǁ_push*"),
    ),
    Target(
        "caldav-write",
        ("plugins/caldav/provider.py",),
        ("tests/caldav",),
        (
            "xǁCalDAVProviderǁpush",
            "xǁCalDAVProviderǁ_push",
            "xǁCalDAVProviderǁ_link_existing",
            "xǁCalDAVProviderǁdelete",
            "xǁCalDAVProviderǁfind",
        ),
    ),
    Target(
        "sync",
        ("hub/sync.py", "hub/sync_read.py", "hub/sync_apply.py"),
        ("tests/sync/test_sync_backoff.py", *SYNC_TESTS),
    ),
    Target("reconcile", ("hub/reconcile.py",), ("tests/sync/test_reconcile.py", *SYNC_TESTS)),
)

_RESULT = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+?)\s*$")
_CAUGHT = {"killed", "timeout"}


def _config(target: Target) -> str:
    """The [tool.mutmut] table of one target's scratch copy."""
    sources = sorted({m.split("/", 1)[0] for m in target.modules})
    lines = [
        "[tool.mutmut]",
        f"source_paths = {json.dumps(sources)}",
        f"only_mutate = {json.dumps(list(target.modules))}",
        'also_copy = ["README.md", "docs/", "examples/", "bench/"]',
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(list(target.tests))}",
    ]
    return "\n".join(lines) + "\n"


def _prepare(target: Target) -> Path:
    """A scratch copy of the tracked files, its pyproject pointing mutmut at the target."""
    work = WORK / target.name
    shutil.rmtree(work, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        dest = work / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, dest)
    pyproject = (work / "pyproject.toml").read_text("utf-8")
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[)", "", pyproject)
    (work / "pyproject.toml").write_text(pyproject + "\n" + _config(target), "utf-8")
    return work


def _mutmut() -> str:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit("mutmut is not installed: .venv/bin/pip install -e '.[mutation]'")
    return found


def _summary(target: Target, module: str, statuses: dict[str, str], wall: float) -> dict:
    """Counts and kill ratio of one module's mutants."""
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    counts = Counter(s for n, s in statuses.items() if n.startswith(prefix))
    checked = sum(n for s, n in counts.items() if s not in ("not checked", "skipped"))
    caught = sum(counts[s] for s in _CAUGHT)
    return {
        "target": target.name,
        "module": module,
        "mutants": sum(counts.values()),
        "checked": checked,
        "killed": counts["killed"],
        "timeout": counts["timeout"],
        "survived": counts["survived"],
        "no_tests": counts["no tests"],
        "kill_ratio": round(caught / checked, 3) if checked else None,
        "wall_s": wall,
    }


def run(target: Target, children: int) -> list[dict]:
    """Run one target; returns the summary of each of its modules."""
    work = _prepare(target)
    started = time.monotonic()
    with (work / "mutmut.log").open("w") as log:
        subprocess.run(
            [_mutmut(), "run", "--max-children", str(children), *target.globs()],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = round(time.monotonic() - started, 1)
    listing = subprocess.run(
        [_mutmut(), "results", "--all", "true"], cwd=work, capture_output=True, text=True
    ).stdout
    wanted = [re.compile(re.escape(g).replace(r"\*", ".*") + "$") for g in target.globs()]
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        m = _RESULT.match(line)
        if m and any(w.match(m["name"]) for w in wanted):
            statuses[m["name"]] = m["status"]
    survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    (work / "survivors.txt").write_text("".join(f"{n}\n" for n in survivors), "utf-8")
    return [_summary(target, module, statuses, wall) for module in target.modules]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    by_name = {t.name: t for t in TARGETS}
    if args.list:
        for t in TARGETS:
            print(f"{t.name:22} {' '.join(t.modules)}: {' '.join(t.tests)}")
        return 0
    unknown = [n for n in args.targets if n not in by_name]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    chosen = [by_name[n] for n in args.targets] if args.targets else list(TARGETS)
    summaries = []
    for target in chosen:
        for summary in run(target, args.max_children):
            summaries.append(summary)
            ratio = summary["kill_ratio"]
            print(
                f"{summary['module']:30} {summary['killed']:>5} killed "
                f"{summary['timeout']:>3} timeout {summary['survived']:>4} survived "
                f"{summary['no_tests']:>4} no tests  kill ratio "
                f"{ratio if ratio is not None else '-'}  ({summary['wall_s']} s)",
                flush=True,
            )
    for summary in summaries:
        print(json.dumps({"bench": "mutation", **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
