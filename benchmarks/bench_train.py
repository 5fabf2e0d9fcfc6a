"""Training throughput at 256x512: stereokit's loop vs a bare eager step of the same model.

Run by hand:  python benchmarks/bench_train.py [--steps 10] [--batch 2] [--recipe]
Prints images/s and the time split (data, forward, backward, optimizer) of our loop, and the
images/s of a straightforward reference step (random tensors, no loader, no logging).
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
from stereokit.engine.optim import build_adam
from stereokit.models import build_stereonet, multiscale_loss
from stereokit.services.pack import run_pack
from stereokit.services.synth import run_synth

DEMO = ["model.maxdisp=64", "model.out_channels=[16, 16, 32, 64, 64, 16]", "model.groups=16",
        "model.agg_channels=16", "model.agg_blocks=2", "model.refine_channels=16", "model.refine_dilations=[1, 2, 4, 1]",
        "model.loss_weights=[0.3, 0.3, 0.5, 0.5, 1.0]"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--recipe", action="store_true", help="the full recipe model instead of the demo-sized one")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
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
