"""A real benchmark into the same LMDB format as SceneFlow: sparse ground truth (0 = unknown) and the
non-occluded mask kept, the source format recorded in the pack's metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from stereokit.data.benchmark import BenchmarkSample, read_benchmark
from stereokit.data.lmdb_pack import PackStats, pack_records
from stereokit.data.records import encode_record


def benchmark_digest(name: str, samples: list[BenchmarkSample]) -> str:
    """What is packed: the benchmark and its sample names (a resumed pack must be of the same)."""
    return hashlib.sha256("\n".join([name, *(s.name for s in samples)]).encode()).hexdigest()


def pack_benchmark(name: str, folder: Path, target: Path, force: bool = False, max_map_size: int = 1 << 40,
                   on_progress: Callable[[int], None] | None = None, samples: list[BenchmarkSample] | None = None) -> PackStats:
    samples = samples if samples is not None else read_benchmark(name, folder)

    def encode(index: int) -> tuple[bytes, tuple[int, int]]:
        s = samples[index]
        return encode_record(s.left, s.right, s.disp, [s.name], s.nonocc), s.disp.shape

    meta = {"source_format": name, "source_list": str(folder), "names": [s.name for s in samples],
            "sparse": any(float(s.valid.mean()) < 0.5 for s in samples)}
    return pack_records(len(samples), encode, benchmark_digest(name, samples), target, meta, 1, force, max_map_size, on_progress)
