"""Every benchmark that can run at a tiny size runs here, so a change that breaks one fails CI.
(Speed targets live in the benchmarks' own output and docs/performance.md, never in assertions.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = {
    "bench_infer": ["--runs", "1", "--height", "64", "--width", "128", "--demo"],
    "bench_real": ["--sizes", "half"],
    "bench_data": ["--pairs", "12", "--height", "64", "--width", "256", "--workers", "1", "--passes", "1"],
    "bench_train": ["--steps", "2", "--batch", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_at_a_tiny_size(script: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *SMOKE[script]], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|" in proc.stdout  # its table
