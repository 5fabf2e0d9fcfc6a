"""Training throughput at 256x512: stereokit's loop vs a bare eager step of the same model.

Run by hand:  python benchmarks/bench_train.py [--steps 10] [--batch 2] [--recipe]
Prints images/s and the time split (data, forward, backward, optimizer) of our loop, and the
images/s of a straightforward reference step (random tensors, no loader, no logging).

python benchmarks/bench_train.py --options [--recipe]: the training throughput settings
(`train.*.channels_last`, `train.*.amp: bf16`, `train.*.compile`) each in a fresh process: step
time, images/s, peak RSS and (compile) the first step's compilation time, beside the plain fp32 step.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from stereokit.allocator import keep_large_blocks
from stereokit.config import load_config
from stereokit.data.dataset import build_dataloader
from stereokit.engine.optim import build_adam
from stereokit.models import build_stereonet, multiscale_loss
from stereokit.models.inference import conv2d_channels_last
from stereokit.services.pack import run_pack
from stereokit.services.demo import SMALL_MODEL
from stereokit.services.synth import run_synth

DEMO = SMALL_MODEL  # the small from-scratch model
# name: (channels_last, bf16 autocast, torch.compile)
VARIANTS = {"fp32": (False, False, False), "channels_last": (True, False, False), "bf16": (False, True, False),
            "channels_last+bf16": (True, True, False), "compile": (False, False, True),
            "compile+channels_last+bf16": (True, True, True)}


def one_variant(name: str, recipe: bool, batch: int, steps: int) -> None:
    """Time `steps` training steps of one variant (after one warm-up) and print one JSON line."""
    channels_last, bf16, compiled = VARIANTS[name]
    cfg = load_config(None, [] if recipe else DEMO)
    torch.manual_seed(0)
    model = build_stereonet(cfg.model)
    if channels_last:
        conv2d_channels_last(model)
    optimizer = build_adam(model, 1e-4, 4e-5)
    net = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, 256, 512)
    gt = torch.rand(batch, 1, 256, 512) * 60
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = net(x, x)
        loss = multiscale_loss([o.float() for o in outputs], gt, cfg.model.maxdisp, cfg.model.loss_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"variant": name, "step_s": step, "images_s": batch / step, "peak_mib": peak_mib, "loss": float(loss),
                      "first_step_s": times[0]}))


def options_table(recipe: bool, batch: int, steps: int) -> None:
    rows = []
    for name in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--batch", str(batch), "--steps", str(steps)]
                             + (["--recipe"] if recipe else []), capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["step_s"]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"{'recipe' if recipe else 'demo'} model, 256x512, batch {batch}, median of {steps} steps after one warm-up")
    print("| setting | step (s) | images/s | vs fp32 | first step (s) | peak RSS (MiB) | loss finite |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['step_s']:.2f} | {r['images_s']:.2f} | {base / r['step_s']:.2f}x | {r['first_step_s']:.1f} | "
              f"{r['peak_mib']:.0f} | {math.isfinite(r['loss'])} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--recipe", action="store_true", help="the full recipe model instead of the demo-sized one")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--options", action="store_true", help="compare the throughput settings, one process each")
    parser.add_argument("--one", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_large_blocks()  # as every stereokit command does
    if args.one:
        one_variant(args.one, args.recipe, args.batch, args.steps)
        return
    if args.options:
        options_table(args.recipe, args.batch, args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_synth(root / "sf", args.batch * (args.steps + 2), 0, 256, 512, 64, show_progress=False)
        run_pack(root / "sf", "train", root / "lmdb", show_progress=False)
        cfg = load_config(None, ([] if args.recipe else DEMO) + [f"data.train_lmdb={root / 'lmdb' / 'train_lmdb'}"])
        model = build_stereonet(cfg.model)
        optimizer = build_adam(model, 1e-4, 4e-5)
        loader = build_dataloader(cfg, "train", train=True, batch_size=args.batch, num_workers=args.workers)
        split = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        it = iter(loader)
        next(it)  # warm-up batch: worker start and first-call allocations
        steps = 0
        total_start = time.perf_counter()
        while steps < args.steps:
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            loss = multiscale_loss(model(batch["imgl"], batch["imgr"]), batch["disp"], cfg.model.maxdisp, cfg.model.loss_weights)
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            for key, dt in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                split[key] += dt
            steps += 1
        ours = steps * args.batch / (time.perf_counter() - total_start)

        x = torch.randn(args.batch, 3, 256, 512)
        gt = torch.rand(args.batch, 1, 256, 512) * 60
        ref_model = build_stereonet(cfg.model)
        ref_opt = torch.optim.Adam(ref_model.parameters(), 1e-4)
        start = time.perf_counter()
        for _ in range(args.steps):
            ref_opt.zero_grad()
            sum(torch.nn.functional.smooth_l1_loss(torch.nn.functional.interpolate(o, size=(256, 512), mode="bilinear") * 64, gt)
                for o in ref_model(x, x)).backward()
            ref_opt.step()
        reference = args.steps * args.batch / (time.perf_counter() - start)
    total = sum(split.values())
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"{'recipe' if args.recipe else 'demo-sized'} model, 256x512, batch {args.batch}, {args.steps} steps")
    print("| loop | images/s | data | forward | backward | optimizer |")
    print("|---|---|---|---|---|---|")
    print(f"| stereokit (LMDB loader, {args.workers} worker) | {ours:.2f} | "
          + " | ".join(f"{split[k] / total:.0%}" for k in split) + " |")
    print(f"| bare eager reference step | {reference:.2f} | - | - | - | - |")


if __name__ == "__main__":
    main()
