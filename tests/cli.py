"""Running the real `stereokit` console script from tests: one call, or many refusals at once."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

STEREOKIT = str(Path(sys.executable).parent / "stereokit")


def cores() -> int:
    """The cores this process may run on (a container's share, where the OS says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tree_state(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STEREOKIT, *args], capture_output=True, text=True, timeout=300)


def run_all(commands: Iterable[Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Each command in its own process, a few at a time: a refusal costs mostly the interpreter's start,
    which the cores can overlap. Only for commands that must not write (the caller compares the tree)."""
    with ThreadPoolExecutor(max_workers=max(2, cores())) as pool:
        return list(pool.map(lambda args: run(*args), commands))


def assert_refused(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0, (result.args, result.stdout)
    assert needle in " ".join(result.stderr.split()), (result.args, result.stderr)  # Rich wraps long sentences
    assert "Traceback" not in result.stderr, (result.args, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, (result.args, result.stderr)


def assert_all_refused(root: Path, cases: Sequence[tuple[Sequence[str], str]]) -> None:
    """Every case exits non-zero with its sentence, and the tree under `root` is left byte for byte."""
    before = tree_state(root)
    for result, (_, needle) in zip(run_all([args for args, _ in cases]), cases):
        assert_refused(result, needle)
    after = tree_state(root)
    changed = sorted(set(before) ^ set(after) | {k for k in set(before) & set(after) if before[k] != after[k]})
    assert not changed, f"written or changed by a refused command: {changed}"
