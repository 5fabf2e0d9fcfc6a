"""Self-supervised adaptation on a real pair: the shipped model's bad-2 on Motorcycle before and after
`train --stage adapt` on the pair's images alone (its ground truth only scores), against steps and LR.

    python benchmarks/bench_adapt.py [--size half] [--steps 50,200] [--lrs 1e-5,5e-5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2

from stereokit.data.real_pairs import motorcycle
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.services.adapt import AdaptSettings, adapt_config, run_adapt
from stereokit.services.predictors import open_predictor, stage_predictor

SIZES = {"quarter": 0.25, "half": 0.5, "full": 1.0}


def bad2(predictor, pair) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    m = BenchmarkMetrics()
    one = m.update(predictor(pair["left"], pair["right"])[0], pair["disp"], pair["valid"])
    return one["epe"], one["bad2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--size", default="half", choices=list(SIZES))
    parser.add_argument("--steps", default="50,200")
    parser.add_argument("--lrs", default="1e-5,5e-5")
    args = parser.parse_args()
    pair = motorcycle(SIZES[args.size])
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs"
        for side, key in (("left", "left"), ("right", "right")):
            (pairs / side).mkdir(parents=True)
            cv2.imwrite(str(pairs / side / "motorcycle.png"), pair[key])
        epe0, b0 = bad2(open_predictor(args.model), pair)
        print(f"Motorcycle ({args.size}), {args.model}: before adaptation EPE {epe0:.3f} px, bad-2 {b0:.1%}")
        print("| steps | LR | EPE px | bad-2 | photometric start -> best | restores |")
        print("|---|---|---|---|---|---|")
        for steps in (int(s) for s in args.steps.split(",")):
            for lr in (float(v) for v in args.lrs.split(",")):
                run = Path(tmp) / f"run_{steps}_{lr}"
                r = run_adapt(adapt_config(None, args.model), run, args.model, pairs,
                              AdaptSettings(steps=steps, lr=lr, eval_every=max(1, steps // 10)), show_progress=False)
                epe, b = bad2(stage_predictor(run, "adapt"), pair)
                print(f"| {steps} | {lr:g} | {epe:.3f} | {b:.1%} | {r.start_score:.4f} -> {r.best_score:.4f} | {len(r.restores)} |")


if __name__ == "__main__":
    main()
