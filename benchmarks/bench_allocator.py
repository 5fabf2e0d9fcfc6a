"""One process as the CLI runs it: the allocator setting (stereokit/allocator.py) applied at start
unless STEREOKIT_MALLOC=system, then the recipe model's eager float inference at 544x960 (or a
training step at 256x512 batch 2 with --train). Prints the time of the timed repetitions and the
process's page faults; run it under a whole-process timer for wall time and peak RSS, A against B:

    python benchmarks/bench_allocator.py                       # allocator kept (as the CLI)
    STEREOKIT_MALLOC=system python benchmarks/bench_allocator.py   # glibc's defaults
"""

from __future__ import annotations

import argparse
import resource
import time

from stereokit.allocator import keep_large_blocks

APPLIED = keep_large_blocks()

import torch  # noqa: E402 - after the allocator setting, as in the CLI

from stereokit.config import load_config  # noqa: E402
from stereokit.models import DeployModel, build_stereonet, multiscale_loss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", action="store_true", help="a training step at 256x512, batch 2")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config(None, [])
    torch.manual_seed(0)
    model = build_stereonet(cfg.model)
    if args.train:
        x = torch.randn(2, 3, 256, 512)
        gt = torch.rand(2, 1, 256, 512) * 100
        optimizer = torch.optim.Adam(model.parameters(), 1e-4)

        def step() -> None:
            loss = multiscale_loss(model(x, x), gt, cfg.model.maxdisp, cfg.model.loss_weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    else:
        deploy = DeployModel(model).eval()
        x = torch.randn(1, 3, 544, 960)

        def step() -> None:
            with torch.no_grad():
                deploy(x, x)
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.reps):
        step()
    per = (time.perf_counter() - start) / args.reps
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"allocator kept: {APPLIED}; {'train step' if args.train else 'inference'}: {per * 1000:.0f} ms; "
          f"minor faults {usage.ru_minflt:,}; peak RSS {usage.ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
