"""Mutation testing of the sync engine, the admin auth and the providers' write paths (mutmut 3).

A developer command, not part of CI (a full run takes hours on 2 cores)::

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python tools/mutation.py                   # every target, one after the other
    .venv/bin/python tools/mutation.py reconcile sync    # some targets
    .venv/bin/python tools/mutation.py --list            # the targets and their tests

Each target mutates one module (or the write-path functions of a provider) and runs only the
tests that exercise it, in a scratch copy under ``.mutation/<target>/`` (so targets can run
side by side and the work tree is never touched). mutmut runs, for each mutant, the tests of
that subset that call the mutated function. The summary prints the kill ratio per module and
one JSON line per target; survivors are listed in ``.mutation/<target>/survivors.txt``, and
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
    module: str  # path of the file to mutate
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # mutant name globs; empty: the whole module

    @property
    def dotted(self) -> str:
        return self.module.removesuffix(".py").replace("/", ".")

    def globs(self) -> list[str]:
        if not self.functions:
            return [f"{self.dotted}.*"]
        return [f"{self.dotted}.{f}__mutmut_*" for f in self.functions]


TARGETS = (
    Target("auth", "hub/admin/auth.py", ("tests/core",)),
    Target("scheduler", "hub/scheduler.py", ("tests/sync/test_scheduler.py",)),
    Target(
        "graph-write",
        "plugins/graph365/batch.py",
        ("tests/graph/test_graph_batch.py", "tests/graph/test_graph_sync.py"),
    ),
    Target(
        "graph-provider-write",
        "plugins/graph365/provider.py",
        ("tests/graph",),
        ("xǁGraphProviderǁpush", "xǁGraphProviderǁdelete", "xǁGraphProviderǁ_push*"),
    ),
    Target(
        "caldav-write",
        "plugins/caldav/provider.py",
        ("tests/caldav",),
        (
            "xǁCalDAVProviderǁpush",
            "xǁCalDAVProviderǁ_push",
            "xǁCalDAVProviderǁ_link_existing",
            "xǁCalDAVProviderǁdelete",
            "xǁCalDAVProviderǁfind",
        ),
    ),
    Target("sync", "hub/sync.py", ("tests/sync/test_sync_backoff.py", *SYNC_TESTS)),
    Target("reconcile", "hub/reconcile.py", ("tests/sync/test_reconcile.py", *SYNC_TESTS)),
)

_RESULT = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+?)\s*$")
_CAUGHT = {"killed", "timeout"}


def _config(target: Target) -> str:
    """The [tool.mutmut] table of one target's scratch copy."""
    source = target.module.split("/", 1)[0]
    lines = [
        "[tool.mutmut]",
        f'source_paths = ["{source}"]',
        f'only_mutate = ["{target.module}"]',
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


def run(target: Target, children: int) -> dict[str, object]:
    """Run one target; returns its summary."""
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
    listing = subprocess.run(
        [_mutmut(), "results", "--all", "true"], cwd=work, capture_output=True, text=True
    ).stdout
    wanted = [re.compile(re.escape(g).replace(r"\*", ".*") + "$") for g in target.globs()]
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        m = _RESULT.match(line)
        if m and any(w.match(m["name"]) for w in wanted):
            statuses[m["name"]] = m["status"]
    counts = Counter(statuses.values())
    checked = sum(n for s, n in counts.items() if s not in ("not checked", "skipped"))
    caught = sum(counts[s] for s in _CAUGHT)
    survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    (work / "survivors.txt").write_text("".join(f"{n}\n" for n in survivors), "utf-8")
    return {
        "target": target.name,
        "module": target.module,
        "mutants": len(statuses),
        "checked": checked,
        "killed": counts["killed"],
        "timeout": counts["timeout"],
        "survived": counts["survived"],
        "no_tests": counts["no tests"],
        "kill_ratio": round(caught / checked, 3) if checked else None,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    by_name = {t.name: t for t in TARGETS}
    if args.list:
        for t in TARGETS:
            print(f"{t.name:22} {t.module:30} {' '.join(t.tests)}")
        return 0
    unknown = [n for n in args.targets if n not in by_name]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    chosen = [by_name[n] for n in args.targets] if args.targets else list(TARGETS)
    summaries = []
    for target in chosen:
        summary = run(target, args.max_children)
        summaries.append(summary)
        ratio = summary["kill_ratio"]
        print(
            f"{target.name:22} {summary['killed']:>5} killed {summary['timeout']:>3} timeout "
            f"{summary['survived']:>4} survived {summary['no_tests']:>4} no tests  "
            f"kill ratio {ratio if ratio is not None else '-'}  ({summary['wall_s']} s)",
            flush=True,
        )
    for summary in summaries:
        print(json.dumps({"bench": "mutation", **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
