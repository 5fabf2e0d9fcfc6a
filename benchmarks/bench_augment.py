"""What each synthetic-to-real augmentation of configs/shipped.yaml does: one run with them all on and one
run per augmentation with only that one off, each from random weights for the same number of steps on the
same scenes, with the same seed, crops, batch and schedule (warmup, cosine to 0). #20's "each a setting with
its measured effect"; the model card's augmentation table.

    python benchmarks/bench_augment.py --train-lmdb data/s24/lmdb/train_lmdb --test-lmdb data/s24/lmdb/test_lmdb \
      --tune data/tune/SceneFlow --steps 1500 --noise-seed 21 --noise-seed 22

Each run's best.pt (chosen by validation on held-out training scenes, as every run does) is scored as infer
runs it (auto scale) on the seed-77 scenes and on Motorcycle. Nothing is chosen here: the shipped settings
stay what they are, and Motorcycle's column is the effect on a real pair, reported. Runs with everything on
and other seeds (--noise-seed, repeatable) measure how far runs differ by chance alone; an effect smaller
than that is not one. A run that has finished is scored without training it again, one cut off on the way
resumes; OUT/<arm>/figures.json holds each arm's figures as soon as it has them.
Writes OUT/augment.json and OUT/augment.png (validation EPE against steps, and bad-2 where scored, every run).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from bench_network import add_run_arguments, column_title, draw_curves, machine_name, print_table, run_figures, train_unless_finished

from stereokit.config import StereokitConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
# each arm: the --set that turns one augmentation off (configs/shipped.yaml has them all on)
ARMS = {
    "all on": [],
    "no random scale": ["data.augment.scale=[1.0, 1.0]"],
    "no colour jitter": ["data.augment.colour_jitter=0"],
    "no occluding patches": ["data.augment.occlusion_prob=0"],
    "no vertical jitter": ["data.augment.vertical_jitter=0"],
}


def arm_configs(args: argparse.Namespace) -> dict[str, StereokitConfig]:
    common = [f"data.train_lmdb={args.train_lmdb}", f"data.test_lmdb={args.test_lmdb}", "train.float.val_every_epochs=2",
              f"train.float.max_steps={args.steps}", *args.set]
    arms = {name: load_config(ROOT / "configs" / "shipped.yaml", [*common, *extra]) for name, extra in ARMS.items()}
    for seed in args.noise_seed:
        arms[f"all on, seed {seed}"] = load_config(ROOT / "configs" / "shipped.yaml", [*common, f"seed={seed}"])
    return arms


def slug(name: str) -> str:
    return name.replace(",", "").replace(" ", "_")


def arm_figures(run: Path, args: argparse.Namespace) -> dict:
    """Kept in OUT/<arm>/figures.json: scoring a run again is minutes, and the table needs every arm.
    Scored again when the sizes asked for are not the ones kept."""
    figures = run / "figures.json"
    if figures.is_file():
        kept = json.loads(figures.read_text())
        asked = ([f"{float(s):g}" for s in args.tune_sizes.split(",")], args.real_sizes.split(","))
        if (list(kept["tune"]), list(kept["motorcycle"])) == asked:
            return kept
    out = run_figures(run, args)
    figures.write_text(json.dumps(out, indent=2))
    return out


def plot(results: dict[str, dict], columns: list[tuple[str, str]], path: Path, title: str) -> None:
    """Left: validation EPE against steps, every run. Right: bad-2 of each run where it is scored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=100, gridspec_kw={"width_ratios": [2, 3]})
    draw_curves(curves, results, "step", {name: name for name in results})
    width = 0.8 / len(results)
    for i, (name, r) in enumerate(results.items()):
        bars.bar([c + i * width for c in range(len(columns))], [100 * r[k][s]["bad2"] for k, s in columns], width, label=name)
    bars.set_xticks([c + 0.4 - width / 2 for c in range(len(columns))], [column_title(c) for c in columns])
    bars.set_ylabel("bad-2 (%), auto scale")
    bars.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "runs/bench_augment", "every run")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--noise-seed", type=int, action="append", default=[], help="add a run with everything on and this seed (repeatable)")
    args = parser.parse_args()
    results = {}
    for name, cfg in arm_configs(args).items():
        run = args.out / slug(name)
        train_unless_finished(cfg, run)
        results[name] = arm_figures(run, args)
    machine = machine_name()
    columns = print_table("run", results, machine)
    plot(results, columns, args.out / "augment.png", f"configs/shipped.yaml, one augmentation off per run, {args.steps} steps each; {machine}")
    (args.out / "augment.json").write_text(json.dumps({"machine": machine, "date": str(date.today()), **results}, indent=2))
    print(f"curves: {args.out / 'augment.png'}")


if __name__ == "__main__":
    main()
