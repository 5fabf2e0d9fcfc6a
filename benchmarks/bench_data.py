"""Data throughput: pack speed, and samples/s of the LMDB loader vs the folder loader.

Run by hand:  python benchmarks/bench_data.py [--pairs 64] [--workers 2]
Writes nothing but stdout; copy the table into docs/performance.md with the machine and date.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from stereokit.config import load_config
from stereokit.data.dataset import build_dataloader
from stereokit.services.pack import run_pack
from stereokit.services.synth import run_synth


def loader_rate(cfg, workers: int, batch: int, passes: int) -> float:
    loader = build_dataloader(cfg, "train", train=True, batch_size=batch, num_workers=workers)
    for _ in loader:  # warm the page cache and the workers' imports
        break
    start, seen = time.perf_counter(), 0
    for epoch in range(passes):
        loader.sampler.set_epoch(epoch)
        for b in loader:
            seen += b["imgl"].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_synth(root / "sf", args.pairs, 0, args.height, args.width, 192, workers=args.workers, show_progress=False)
        rates = {}
        for workers in sorted({1, args.workers}):
            start = time.perf_counter()
            packed = run_pack(root / "sf", "train", root / f"lmdb{workers}", num_workers=workers, show_progress=False)
            rates[workers] = args.pairs / (time.perf_counter() - start)
        tree = sum(p.stat().st_size for p in (root / "sf").rglob("*") if p.suffix in (".png", ".pfm"))
        crop = [min(256, args.height // 32 * 32), min(512, args.width // 32 * 32)]  # the recipe's, or what fits
        common = [f"data.crop={crop}", f"data.data_dir={root / 'sf'}", f"data.train_lmdb={root / 'lmdb1' / 'train_lmdb'}"]
        lmdb_rate = loader_rate(load_config(None, common + ["data.format=lmdb"]), args.workers, 4, args.passes)
        folder_rate = loader_rate(load_config(None, common + ["data.format=folder"]), args.workers, 4, args.passes)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"{args.pairs} pairs of {args.width}x{args.height}, crop {crop[1]}x{crop[0]}, batch 4")
    print("| measure | value |")
    print("|---|---|")
    for workers, rate in rates.items():
        print(f"| pack, {workers} worker(s) | {rate:.1f} pairs/s |")
    print(f"| LMDB loader, {args.workers} workers | {lmdb_rate:.1f} samples/s |")
    print(f"| folder loader, {args.workers} workers | {folder_rate:.1f} samples/s |")
    print(f"| LMDB / folder | {lmdb_rate / folder_rate:.2f}x |")
    print(f"| size: pack / tree (PNG + PFM) | {packed.bytes / args.pairs / 2**20:.2f} / {tree / args.pairs / 2**20:.2f} MiB a pair |")


if __name__ == "__main__":
    main()
