"""Which network learns to work on photographs faster per hour of training on this machine: the shipped
model's narrow StereoNet (configs/shipped.yaml) or the recipe's (config.py's ModelConfig defaults), each
from random weights for the same wall time, on the same generated scenes with the same crops, batch,
augmentations, optimizer and schedule shape (warmup, cosine to 0). The model card's "Why this one".

    python benchmarks/bench_network.py --train-lmdb data/s24/lmdb/train_lmdb --test-lmdb data/s24/lmdb/test_lmdb \
      --tune data/tune/SceneFlow --minutes 40 --out runs/bench_network

--set overrides both networks' settings alike (a smoke run: smaller crops and batch); --tune-sizes and
--real-sizes choose what is scored.

For each network a 30-step probe measures its step time and the step count fills --minutes (so the LR
schedule spans the whole run); validation every other epoch on the held-out training scenes chooses
best.pt, as every stereokit run does. best.pt is then run as infer runs it (auto scale) on the seed-77
scenes (the set that chooses: bench_scale.py's, at half and own size) and on Motorcycle (reported, never
chosen on). Writes OUT/network.png (validation EPE against minutes, both networks) and OUT/network.json.
A network whose run has finished is scored without training it again; one cut off on the way resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from bench_real import SIZES, score
from bench_scale import resized_scene

from stereokit.config import ModelConfig, StereokitConfig, load_config
from stereokit.data.real_pairs import motorcycle
from stereokit.data.sceneflow import load_sample, read_split
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.runs import read_stage_record
from stereokit.services.predictors import open_predictor
from stereokit.services.train import run_train_float

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PROBE_STEPS = 30
ROOT = Path(__file__).resolve().parents[1]


def network_configs(args: argparse.Namespace) -> dict[str, StereokitConfig]:
    shipped = load_config(ROOT / "configs" / "shipped.yaml", [
        f"data.train_lmdb={args.train_lmdb}", f"data.test_lmdb={args.test_lmdb}", "train.float.val_every_epochs=2", *args.set])
    recipe = shipped.model_copy(update={"model": ModelConfig(maxdisp=shipped.model.maxdisp)}, deep=True)
    return {"shipped": shipped, "recipe": recipe}


def train_unless_finished(cfg: StereokitConfig, run: Path) -> None:
    """A run cut off on the way (its stage.json says running) resumes from its checkpoint; a finished one is kept."""
    record = read_stage_record(run, "float")
    if record is not None and record.status == "finished":
        return
    resume = (run / "float" / "checkpoint.pt").is_file()
    run_train_float(cfg, run, resume=resume, force=not resume)


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "float" / "log.jsonl").read_text().splitlines()]


def step_seconds(cfg: StereokitConfig) -> float:
    """Seconds a step from steps 10-30 of a throwaway run (the first steps pay for warm-up)."""
    probe = cfg.model_copy(deep=True)
    probe.train.float.max_steps = PROBE_STEPS
    probe.train.float.log_every_steps = 10
    with tempfile.TemporaryDirectory() as tmp:
        run_train_float(probe, Path(tmp) / "probe", show_progress=False)
        times = {e["step"]: e["elapsed_s"] for e in log_of(Path(tmp) / "probe") if "loss" in e}
    return (times[PROBE_STEPS] - times[10]) / (PROBE_STEPS - 10)


def tune_figures(model: Path, tune: Path, sizes: list[float]) -> dict[str, dict[str, float]]:
    samples, _ = read_split(tune, "test")
    predictor = open_predictor(model)
    out = {}
    for size in sizes:
        metrics = BenchmarkMetrics()
        for sample in samples:
            left, right, gt = resized_scene(load_sample(tune, sample), size)
            metrics.update(predictor(left, right)[0], gt, gt > 0)
        out[f"{size:g}"] = metrics.summary()
    return out


def real_figures(model: Path, sizes: list[str]) -> dict[str, dict[str, float]]:
    predictor = open_predictor(model)
    out = {}
    for name in sizes:
        pair = motorcycle(SIZES[name])
        out[name] = score(predictor(pair["left"], pair["right"])[0], pair)
    return out


def add_run_arguments(parser: argparse.ArgumentParser, out: str, set_help: str) -> None:
    """The data, output and scoring options bench_network and bench_augment share."""
    parser.add_argument("--train-lmdb", type=Path, required=True)
    parser.add_argument("--test-lmdb", type=Path, required=True)
    parser.add_argument("--tune", type=Path, required=True, help="the seed-77 scenes (bench_scale.py's docstring makes them)")
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--set", action="append", default=[], help=f"section.key=value for {set_help}, as stereokit's --set")
    parser.add_argument("--tune-sizes", default="0.5,1", help="sizes of the seed-77 scenes to score")
    parser.add_argument("--real-sizes", default="half,full", help="Motorcycle sizes to score")


def run_figures(run: Path, args: argparse.Namespace) -> dict:
    """A finished run's training log in brief (curve: step, minutes, validation EPE) and its best.pt scored."""
    log = log_of(run)
    return {
        "steps": max(e["step"] for e in log), "minutes": max(e["elapsed_s"] for e in log) / 60,
        "curve": [(e["step"], e["elapsed_s"] / 60, e["val"]["epe"]) for e in log if "val" in e],
        "best_val_epe": min(e["val"]["epe"] for e in log if "val" in e),
        "tune": tune_figures(run / "float", args.tune, [float(s) for s in args.tune_sizes.split(",")]),
        "motorcycle": real_figures(run / "float", args.real_sizes.split(",")),
    }


def column_title(column: tuple[str, str]) -> str:
    kind, size = column
    return f"seed-77 at {size}" if kind == "tune" else f"Motorcycle {size}"


def print_table(first: str, results: dict[str, dict], machine: str) -> list[tuple[str, str]]:
    """The Markdown table of every run's figures; returns its scored columns, (set, size) each."""
    some = next(iter(results.values()))
    columns = [("tune", s) for s in some["tune"]] + [("motorcycle", s) for s in some["motorcycle"]]
    print(f"{machine}, {date.today()}; EPE px / bad-2 (auto scale)")
    print(f"| {first} | steps | minutes | best validation EPE | " + " | ".join(column_title(c) for c in columns) + " |")
    print("|---|---|---|---|" + "---|" * len(columns))
    for name, r in results.items():
        cells = [f"{r[k][s]['epe']:.3f} / {r[k][s]['bad2']:.1%}" for k, s in columns]
        print(f"| {name} | {r['steps']} | {r['minutes']:.1f} | {r['best_val_epe']:.3f} | " + " | ".join(cells) + " |")
    return columns


def machine_name() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def draw_curves(ax: Axes, results: dict[str, dict], x: str, labels: dict[str, str]) -> None:
    """Validation EPE of every run against x: "step" or "minutes" (the curve's first or second entry)."""
    at = 0 if x == "step" else 1
    for name, r in results.items():
        ax.plot([point[at] for point in r["curve"]], [point[2] for point in r["curve"]], "o-", label=labels[name])
    ax.set_xlabel("step" if x == "step" else "wall time (min)")
    ax.set_ylabel("validation EPE (px)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot(results: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    draw_curves(ax, results, "minutes", {n: f"{n} ({r['steps']} steps, {r['minutes']:.0f} min)" for n, r in results.items()})
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "runs/bench_network", "both networks")
    parser.add_argument("--minutes", type=float, default=40.0)
    args = parser.parse_args()
    results = {}
    for name, cfg in network_configs(args).items():
        run = args.out / name
        if (run / "config.yaml").is_file():  # started before: the same step count, so that it resumes
            cfg.train.float.max_steps = load_config(run / "config.yaml").train.float.max_steps
        else:
            cfg.train.float.max_steps = max(1, int(args.minutes * 60 / step_seconds(cfg)))
        train_unless_finished(cfg, run)
        results[name] = run_figures(run, args)
    machine = machine_name()
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "network.png", f"from random weights, the same data and settings; {machine}")
    (args.out / "network.json").write_text(json.dumps({"machine": machine, "date": str(date.today()), **results}, indent=2))
    print_table("network", results, machine)
    print(f"curve: {args.out / 'network.png'}")


if __name__ == "__main__":
    main()
