"""`stereokit pack sceneflow|middlebury|kitti2012|kitti2015|eth3d`: one split into `<target>/<split>_lmdb`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from stereokit.data.benchmark import read_benchmark
from stereokit.data.benchmark_pack import pack_benchmark
from stereokit.data.lmdb_pack import pack_lmdb
from stereokit.data.sceneflow import list_path, read_split
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_read, folder_to_write
from stereokit.progress import progress_bar


class PackResult(BaseModel):
    target: Path
    split: str
    count: int
    written: int
    resumed_from: int
    bytes: int
    shapes: list[list[int]]
    complete: bool
    note: str | None = None


def run_pack(
    src_data_dir: Path,
    split_name: Literal["train", "test"],
    target_data_dir: Path,
    pack_type: str = "lmdb",
    num_workers: int = 1,
    force: bool = False,
    max_map_size_mb: int = 1 << 20,
    show_progress: bool = True,
    limit: int | None = None,
) -> PackResult:
    if pack_type != "lmdb":
        raise StereokitError(f"--pack-type: '{pack_type}' is not supported; use lmdb.")
    if split_name not in ("train", "test"):
        raise StereokitError(f"--split-name: '{split_name}' is not a split; use train or test.")
    if num_workers < 1:
        raise StereokitError(f"--num-workers: {num_workers} must be at least 1.")
    folder_to_read(Path(src_data_dir), "--src-data-dir")
    folder_to_write(Path(target_data_dir), "--target-data-dir")
    samples, note = read_split(Path(src_data_dir), split_name)
    target = Path(target_data_dir) / f"{split_name}_lmdb"
    if target.exists() and not force:
        raise StereokitError(f"{target}: already exists; pass --force to replace it.")
    with progress_bar(f"pack {split_name}", len(samples), enabled=show_progress) as advance:
        stats = pack_lmdb(
            Path(src_data_dir), samples, target, source_list=str(list_path(src_data_dir, split_name)),
            num_workers=num_workers, force=force, max_map_size=max_map_size_mb << 20,
            on_progress=advance, limit=limit,
        )
    return PackResult(
        target=stats.target, split=split_name, count=stats.count, written=stats.written,
        resumed_from=stats.resumed_from, bytes=stats.bytes, shapes=stats.shapes,
        complete=stats.count == len(samples), note=note,
    )


def run_pack_benchmark(
    name: str,
    src_data_dir: Path,
    target_data_dir: Path,
    split_name: str = "train",
    force: bool = False,
    max_map_size_mb: int = 1 << 20,
    show_progress: bool = True,
) -> PackResult:
    """Every sample with ground truth of a real benchmark folder into `<target>/<split>_lmdb`."""
    if not split_name.isidentifier():
        raise StereokitError(f"--split-name: '{split_name}' must be a plain name (letters, digits, _), e.g. train.")
    folder_to_read(Path(src_data_dir), "--src-data-dir")
    folder_to_write(Path(target_data_dir), "--target-data-dir")
    target = Path(target_data_dir) / f"{split_name}_lmdb"
    if target.exists() and not force:
        raise StereokitError(f"{target}: already exists; pass --force to replace it.")
    samples = read_benchmark(name, Path(src_data_dir))  # every file checked before anything is written
    with progress_bar(f"pack {name}", len(samples), enabled=show_progress) as advance:
        stats = pack_benchmark(name, Path(src_data_dir), target, force, max_map_size_mb << 20, advance, samples)
    return PackResult(target=stats.target, split=split_name, count=stats.count, written=stats.written,
                      resumed_from=stats.resumed_from, bytes=stats.bytes, shapes=stats.shapes,
                      complete=stats.count == len(samples), note=f"{name}: {len(samples)} pairs with ground truth")
