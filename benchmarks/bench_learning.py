"""Learning speed from scratch: validation EPE against wall time for the small model on the demo's data.

Run by hand:  python benchmarks/bench_learning.py [--minutes 40] [--out runs/bench_learning]
Generates the demo's data (its scene options, 400 training pairs, 24 held out for validation),
trains the small model (SMALL_MODEL, from random weights) with validation after every epoch for about
--minutes (the step count is fixed from its measured step time, so the LR schedule spans the whole run), then writes
learning.png (val EPE vs minutes) and learning.json, and prints a markdown table for
docs/performance.md. A change that slows learning shows as a curve that sits higher.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from stereokit.config import load_config
from stereokit.services.demo import DEMO_OVERRIDES, HEIGHT, NUM_TRAIN, SCENES, SMALL_MODEL, SYNTH_MAXDISP, WIDTH
from stereokit.services.pack import run_pack
from stereokit.services.synth import run_synth
from stereokit.services.train import run_train_float

# the small model trained 1300 steps of 16 crops in 7.5 minutes on 2 CPU cores (2026-11-29)
STEPS_PER_MINUTE = 1300 / 7.5


def plot(points: list[tuple[float, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([m for m, _ in points], [e for _, e in points], "o-", color="tab:red")
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("validation EPE (px)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_learning"))
    args = parser.parse_args()
    out: Path = args.out
    data = out / "data"
    if not (data / "lmdb" / "test_lmdb").exists():
        run_synth(data / "SceneFlow", NUM_TRAIN, 24, HEIGHT, WIDTH, SYNTH_MAXDISP, seed=0, workers=2, force=True,
                  show_progress=False, options=SCENES)
        for split in ("train", "test"):
            run_pack(data / "SceneFlow", split, data / "lmdb", force=True, show_progress=False)
    steps = int(STEPS_PER_MINUTE * args.minutes)
    # the small model from scratch on the demo's data, crops and batch, at its from-scratch LR
    cfg = load_config(None, SMALL_MODEL + DEMO_OVERRIDES + ["train.float.lr=2e-3",
        "device=cpu", f"data.train_lmdb={data / 'lmdb' / 'train_lmdb'}", f"data.test_lmdb={data / 'lmdb' / 'test_lmdb'}",
        f"train.float.max_steps={steps}", "train.float.val_every_epochs=1", "data.val_count=24",
    ])
    start = time.perf_counter()
    run_train_float(cfg, out / "run", force=True, show_progress=True)
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "run" / "float" / "log.jsonl").read_text().splitlines()]
    points = [(e["elapsed_s"] / 60, e["val"]["epe"]) for e in log if "val" in e]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    plot(points, out / "learning.png", f"demo config, {steps} steps of batch {cfg.train.float.batch_size}; {machine}")
    (out / "learning.json").write_text(json.dumps({"steps": steps, "wall_s": wall, "machine": machine, "points": points}, indent=2))
    print(f"| minutes | val EPE (px) |  ({steps} steps, {wall / 60:.1f} min, {machine})")
    print("|---|---|")
    for minutes, epe in points[:: max(1, len(points) // 12)] + points[-1:]:
        print(f"| {minutes:.1f} | {epe:.3f} |")
    print(f"curve: {out / 'learning.png'}")


if __name__ == "__main__":
    main()
