"""The `stereokit` command line: parse, call one service, render its result with Rich."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.table import Table
from rich.text import Text

from stereokit import __version__
from stereokit.config import StereokitConfig, config_to_yaml, load_config
from stereokit.errors import StereokitError

app = typer.Typer(
    name="stereokit",
    help="Train StereoNet on SceneFlow and carry it to a deployable integer model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
pack_app = typer.Typer(help="Pack a dataset into LMDB.", no_args_is_help=True)
app.add_typer(pack_app, name="pack")
rig_app = typer.Typer(help="Calibrate a stereo camera rig.", no_args_is_help=True)
app.add_typer(rig_app, name="rig")

# Markup off: paths and values a user gives are printed as they are (a file may be named a[x].png);
# styles are given as Text spans, never parsed out of strings.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (defaults: the reference recipe).")
SetOpt = typer.Option([], "--set", help="Override one value: section.key=value (repeatable).")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A StereokitError becomes one sentence on stderr and its exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StereokitError as exc:
            err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _config(config: Optional[Path], overrides: list[str]) -> StereokitConfig:
    return load_config(config, overrides)


def _echo_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stereokit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Train StereoNet on SceneFlow and carry it to a deployable integer model."""


@config_app.command("show")
@user_errors
def config_show(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt) -> None:
    """Print the resolved config as YAML.

    Example: stereokit config show --set model.maxdisp=64
    """
    typer.echo(config_to_yaml(_config(config, set_)), nl=False)


@app.command()
@user_errors
def calops(
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    height: Optional[int] = typer.Option(None, "--height", help="Input height (default: deploy.input_height, 544)."),
    width: Optional[int] = typer.Option(None, "--width", help="Input width (default: deploy.input_width, 960)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Count parameters and multiply-accumulates, total and per module.

    Example: stereokit calops --height 544 --width 960
    """
    from stereokit.services.calops import run_calops

    result = run_calops(_config(config, set_), height, width)
    if as_json:
        _echo_json(result.model_dump())
        return
    table = Table(title=f"StereoNet cost at {result.input[0]}x{result.input[1]}")
    table.add_column("module")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("share", justify="right")
    for row in result.modules:
        share = row.macs / result.macs if result.macs else 0.0
        table.add_row(row.name, f"{row.params:,}", f"{row.macs / 1e9:.3f} G", f"{share:.1%}")
    table.add_section()
    table.add_row("total", f"{result.params:,}", f"{result.macs / 1e9:.3f} G", "100.0%", style="bold")
    console.print(table)


@app.command()
@user_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the SceneFlow-format tree into."),
    num_train: int = typer.Option(200, "--num-train", help="Training pairs."),
    num_test: int = typer.Option(40, "--num-test", help="Test pairs."),
    height: int = typer.Option(256, "--height"),
    width: int = typer.Option(512, "--width"),
    maxdisp: float = typer.Option(64, "--maxdisp", help="Largest disparity in the scenes (pixels)."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(1, "--workers", help="Processes writing pairs in parallel."),
    min_objects: Optional[int] = typer.Option(None, "--min-objects", help="Fewest foreground objects per scene (default 10)."),
    max_objects: Optional[int] = typer.Option(None, "--max-objects", help="Most foreground objects per scene (default 30)."),
    scene: list[str] = typer.Option([], "--scene", help="A scene option as name=value, repeatable (see docs/data.md), e.g. noise=0 or foreground=[0.2,0.9]."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
) -> None:
    """Generate FlyingThings-like stereo pairs with exact disparity, in SceneFlow's layout.

    Example: stereokit synth --out data/synth --num-train 200 --num-test 40 --workers 2 --scene blur=0
    """
    from stereokit.data.synth import SceneOptions
    from stereokit.services.synth import run_synth

    counts = [f"min_objects={min_objects}"] * (min_objects is not None) + [f"max_objects={max_objects}"] * (max_objects is not None)
    try:
        options = SceneOptions.parse(counts + list(scene))
    except ValueError as exc:
        raise StereokitError(str(exc)) from None
    r = run_synth(out, num_train, num_test, height, width, maxdisp, seed, workers, force, options=options)
    console.print(f"wrote {r.num_train} train and {r.num_test} test pairs ({r.width}x{r.height}, maxdisp {r.maxdisp:g}) to {r.out}")


@pack_app.command("sceneflow")
@user_errors
def pack_sceneflow(
    src_data_dir: Path = typer.Option(..., "--src-data-dir", help="The SceneFlow tree (or a synth output)."),
    split_name: str = typer.Option(..., "--split-name", help="train or test."),
    target_data_dir: Path = typer.Option(..., "--target-data-dir", help="Writes <dir>/<split>_lmdb."),
    pack_type: str = typer.Option("lmdb", "--pack-type", help="Only lmdb."),
    num_workers: int = typer.Option(1, "--num-workers", help="Processes reading and encoding pairs."),
    force: bool = typer.Option(False, "--force", help="Replace an existing pack or an interrupted one of another list."),
    max_map_size_mb: int = typer.Option(1 << 20, "--max-map-size", help="Largest LMDB map in MiB (the map grows up to it)."),
) -> None:
    """Pack one SceneFlow split into LMDB; an interrupted pack resumes on the next run.

    Example: stereokit pack sceneflow --src-data-dir data/SceneFlow --split-name train --pack-type lmdb --num-workers 4 --target-data-dir data/lmdb
    """
    from stereokit.services.pack import run_pack

    r = run_pack(src_data_dir, split_name, target_data_dir, pack_type, num_workers, force, max_map_size_mb)  # type: ignore[arg-type]
    if r.note:
        console.print(r.note)
    resumed = f", resumed after {r.resumed_from}" if r.resumed_from else ""
    console.print(f"packed {r.count} pairs into {r.target} ({r.bytes / 2**20:.1f} MiB{resumed})")


def _pack_benchmark_command(name: str) -> Callable[..., None]:
    def command(
        src_data_dir: Path = typer.Option(..., "--src-data-dir", help=f"The {name} folder as it unpacks (see docs/data.md)."),
        target_data_dir: Path = typer.Option(..., "--target-data-dir", help="Writes <dir>/<split>_lmdb."),
        split_name: str = typer.Option("train", "--split-name", help="The name of the pack (<name>_lmdb)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing pack."),
        max_map_size_mb: int = typer.Option(1 << 20, "--max-map-size", help="Largest LMDB map in MiB."),
    ) -> None:
        from stereokit.services.pack import run_pack_benchmark

        r = run_pack_benchmark(name, src_data_dir, target_data_dir, split_name, force, max_map_size_mb)
        console.print(f"packed {r.count} {name} pairs (sparse ground truth and masks kept) into {r.target} ({r.bytes / 2**20:.1f} MiB)")

    command.__doc__ = (f"Pack a {name} folder (every pair with ground truth) into the SceneFlow LMDB format.\n\n"
                       f"    Example: stereokit pack {name} --src-data-dir data/{name} --target-data-dir data/{name}_lmdb")
    return command


for _name in ("middlebury", "kitti2012", "kitti2015", "eth3d"):
    pack_app.command(_name)(user_errors(_pack_benchmark_command(_name)))


RunDirOpt = typer.Option(Path("runs/stereonet"), "--run-dir", help="The run directory (created if needed).")


@app.command()
@user_errors
def train(
    stage: str = typer.Option("float", "--stage", help="float, calibration, qat, or adapt (self-supervised, on --pairs)."),
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    run_dir: Path = RunDirOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/<stage>/checkpoint.pt exactly."),
    force: bool = typer.Option(False, "--force", help="Start the stage over; it and the stages made from it move to RUN/.stale/."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Launch DDP on this node through torchrun."),
    deterministic: bool = typer.Option(False, "--deterministic", help="On CUDA: repeatable kernels (cuDNN deterministic, no TF32), slower. CPU runs are repeatable anyway."),
    init: Optional[str] = typer.Option(None, "--init", help="Float or adapt stage: start from a shipped model (e.g. shipped) or a weights .pt; its network must match the config."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Adapt stage: your rectified pairs without ground truth (left/ and right/, or leftNN/rightNN)."),
    steps: int = typer.Option(200, "--steps", help="Adapt stage: gradient steps."),
    lr: float = typer.Option(1e-4, "--lr", help="Adapt stage: learning rate (halved at every restore)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a stage. Works the same under `torchrun --nproc-per-node N -m stereokit train ...`.

    Example: stereokit train --stage float --config my.yaml --run-dir runs/sf --nproc-per-node 8
    Example: stereokit train --stage float --init shipped --config configs/finetune_kitti.yaml --run-dir runs/ft
    Example: stereokit train --stage adapt --init shipped --pairs my_pairs/ --run-dir runs/mycam
    """
    from stereokit.engine.distributed import launch_torchrun, under_torchrun

    if stage not in ("float", "calibration", "qat", "adapt"):
        raise StereokitError(f"--stage: '{stage}' is not one of float, calibration, qat, adapt.")
    if stage == "adapt":
        _adapt(init, pairs, run_dir, config, set_, steps, lr, force, quiet)
        return
    if pairs is not None:
        raise StereokitError("--pairs goes with --stage adapt (or with 'stereokit calibrate').")
    if stage != "float" and config is not None:
        raise StereokitError(f"--config: the {stage} stage uses the run's own config.yaml; change its settings with --set train.{stage}.KEY=VALUE.")
    if deterministic:
        import os

        from stereokit.engine.distributed import DETERMINISTIC_ENV

        os.environ[DETERMINISTIC_ENV] = "1"
    if init is not None and stage != "float":
        raise StereokitError(f"--init: the {stage} stage starts from the run's own earlier stage; --init goes with --stage float or adapt.")
    if stage == "calibration":
        _print_calibration(_calibrate(run_dir, force, quiet, overrides=set_))
        return
    if nproc_per_node > 1 and not under_torchrun():
        raise typer.Exit(launch_torchrun(_without_option(sys.argv[1:], "--nproc-per-node"), nproc_per_node))
    if stage == "qat":
        from stereokit.services.qat import run_qat

        result = run_qat(run_dir, resume=resume, force=force, show_progress=not quiet, overrides=set_)
    else:
        from stereokit.services.train import run_train_float

        result = run_train_float(_config(config, set_), run_dir, resume=resume, force=force, show_progress=not quiet, init=init)
    _print_train(result, run_dir)


def _adapt(init: Optional[str], pairs: Optional[Path], run_dir: Path, config: Optional[Path], set_: list[str], steps: int,
           lr: float, force: bool, quiet: bool) -> None:
    from stereokit.services.adapt import AdaptSettings, adapt_config, run_adapt

    if init is None or pairs is None:
        raise StereokitError("--stage adapt needs --init MODEL (a shipped model or weights .pt) and --pairs DIR.")
    if steps < 1 or not (lr > 0):
        raise StereokitError(f"--steps {steps} / --lr {lr}: both must be positive.")
    cfg = adapt_config(_config(config, set_) if (config is not None or set_) else None, init)
    r = run_adapt(cfg, run_dir, init, pairs, AdaptSettings(steps=steps, lr=lr), force=force, show_progress=not quiet)
    console.print(f"adapt finished: {r.steps} steps on {r.pairs} pair(s); photometric score {r.start_score:.4f} -> "
                  f"{r.best_score:.4f} (best at step {r.best_step}); {len(r.restores)} restore(s) -> {run_dir / 'adapt'}")
    for event in r.restores:
        console.print(f"  restored the best weights at step {event['step']}: {event['why']}")


def _print_moved(moved: list[str]) -> None:
    if moved:
        console.print(f"moved aside (stale now, kept): {', '.join(moved)}")


def _print_train(result: Any, run_dir: Path) -> None:
    if result.world_size > 1 and not _is_rank0():
        return
    _print_moved(result.moved_aside)
    val = result.val or {}
    best = result.best_epe if result.best_epe is not None else float("nan")
    console.print(
        f"{result.stage} finished: {result.steps} steps, {result.epochs} epochs on {result.world_size} process(es); "
        f"val EPE {val.get('epe', float('nan')):.3f} px, best {best:.3f} px -> {run_dir / result.stage}"
    )
    for note in result.notes:
        console.print(note)


def _calibrate(run_dir: Path, force: bool, quiet: bool, pairs: Optional[Path] = None, overrides: Optional[list[str]] = None) -> Any:
    from stereokit.services.calibrate import run_calibrate

    return run_calibrate(run_dir, force=force, show_progress=not quiet, pairs=pairs, overrides=overrides)


def _print_calibration(result: Any) -> None:
    _print_moved(result.moved_aside)
    console.print(
        f"calibration finished: {result.batches} batches ({result.images} images), {result.observer} observer; "
        f"{result.quantized_convs} int8 convs, {result.activation_quantizers} activation quantizers -> {result.checkpoint}"
    )


@app.command()
@user_errors
def calibrate(
    run_dir: Path = RunDirOpt,
    force: bool = typer.Option(False, "--force", help="Redo the calibration stage."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Observe your own rectified pairs (left/ and right/, or leftNN/rightNN) instead of the training split."),
    set_: list[str] = typer.Option([], "--set", help="Change one of this stage's settings (train.calibration.*, quant.*) in the run's config.yaml; repeatable."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Calibrate the quantized model from RUN/float/best.pt (or RUN/adapt/best.pt): observers only, no gradient step.

    Example: stereokit calibrate --run-dir runs/sf
    Example: stereokit calibrate --run-dir runs/sf --force --set train.calibration.observer=minmax
    Example: stereokit calibrate --run-dir runs/mycam --pairs my_pairs/
    """
    _print_calibration(_calibrate(run_dir, force, quiet, pairs, set_))


@app.command()
@user_errors
def qat(
    run_dir: Path = RunDirOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/qat/checkpoint.pt exactly."),
    force: bool = typer.Option(False, "--force", help="Start QAT over."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Launch DDP on this node through torchrun."),
    set_: list[str] = typer.Option([], "--set", help="Change one of this stage's settings (train.qat.*) in the run's config.yaml; repeatable."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Quantization-aware training from the calibrated model (same loop as float; small LR, step decay).

    Example: stereokit qat --run-dir runs/sf
    Example: stereokit qat --run-dir runs/sf --force --set train.qat.lr=1e-5   (float and calibration stay as they are)
    """
    from stereokit.engine.distributed import launch_torchrun, under_torchrun
    from stereokit.services.qat import run_qat

    if nproc_per_node > 1 and not under_torchrun():
        flags = [f for f, on in (("--resume", resume), ("--force", force), ("--quiet", quiet)) if on]
        sets = [f"--set={value}" for value in set_]
        raise typer.Exit(launch_torchrun(["qat", "--run-dir", str(run_dir), *flags, *sets], nproc_per_node))
    _print_train(run_qat(run_dir, resume=resume, force=force, show_progress=not quiet, overrides=set_), run_dir)


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv minus `name VALUE` / `name=VALUE`, to hand the rest of the command to torchrun."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _metrics_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    for name in ("stage", "EPE (px)", "bad-1", "bad-3", "pixels"):
        table.add_column(name, justify="right" if name != "stage" else "left")
    for stage_name, m in rows.items():
        table.add_row(stage_name, f"{m['epe']:.4f}", f"{m['bad1']:.2%}", f"{m['bad3']:.2%}", f"{m['pixels']:,}")
    return table


STATE_STYLE = {"finished": "green", "stale": "yellow", "running": "cyan", "missing": "dim", "interrupted": "yellow",
               "failed": "red", "damaged": "red"}


@app.command()
@user_errors
def status(
    run_dir: Path = typer.Argument(..., help="The run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Every stage of a run: finished, stale (and why), running or missing; EPE, size, when, what to run next.

    Example: stereokit status runs/sf
    """
    from stereokit.services.status import run_status

    r = run_status(run_dir)
    if as_json:
        _echo_json(r.model_dump(mode="json"))
        return
    table = Table(title=f"{r.run_dir}")
    for name in ("stage", "state", "EPE (px)", "size", "finished (UTC)", "why / run"):
        table.add_column(name, justify="right" if name in ("EPE (px)", "size") else "left", overflow="fold",
                         no_wrap=name in ("stage", "state", "finished (UTC)"))
    for row in r.stages:
        epe = f"{row.epe:.4f} ({row.epe_split})" if row.epe is not None else ""
        size = f"{row.bytes / 2**20:.1f} MiB" if row.bytes else ""
        note = "; ".join(x for x in (row.why, row.command) if x)
        finished = row.finished[:16].replace("T", " ") if row.finished else ""  # to the minute; --json has it whole
        table.add_row(row.stage, Text(row.state, style=STATE_STYLE.get(row.state, "")), epe, size, finished, note)
    console.print(table)
    if r.moved_aside:
        console.print(f"{len(r.moved_aside)} stage(s) moved aside by --force in {r.run_dir / '.stale'} (newest: {r.moved_aside[0]['path']})")
    if r.next_command:
        console.print(Text.assemble(("next: ", "bold"), r.next_command))


@app.command("eval")
@user_errors
def eval_(
    stage: str = typer.Option("float", "--stage", help="float, calibration, qat or int_infer (the integer model)."),
    run_dir: Path = RunDirOpt,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Evaluate this checkpoint instead of the stage's own."),
    all_stages: bool = typer.Option(False, "--all", help="Every stage that exists, side by side."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A real benchmark read as it ships: middlebury, kitti2012, kitti2015, eth3d, or sceneflow (a tree's test split)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="With --dataset: the folder the benchmark unpacks to (or one scene's folder)."),
    model: Optional[str] = typer.Option(None, "--model", help="With --dataset: a shipped model, a weights .pt, a .hbm, an .onnx or a stage directory (instead of --stage/--run-dir; default the shipped model when the run has no such stage)."),
    save_path: Optional[Path] = typer.Option(None, "--save-path", help="With --dataset: where pictures and eval.json go (default RUN/<stage>/eval_<dataset>, or eval_<dataset>)."),
    provider: str = typer.Option("auto", "--provider", help="ONNX Runtime provider for a .hbm/.onnx --model."),
    scale: str = typer.Option("auto", "--scale", help="With --dataset: auto: run each pair at the scale the model is accurate at (small disparities upscaled, ones past its range downscaled); 1: at its own size; or a factor."),
    raw: bool = typer.Option(False, "--raw", help="With --dataset: score the network's disparity as it comes, without infer's clean-up."),
    multiscale: bool = typer.Option(False, "--multiscale", help="With --dataset: as infer's (the median of passes at 0.9x, 1x and 1.1x the scale)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"epe", "bad1", "bad3", "pixels"} (with --all: one per stage; with --dataset also bad2, d1_all, pooled and nonocc).'),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """EPE, bad-1 and bad-3 on the test split at full resolution; pictures and eval.json in RUN/<stage>/eval/.

    EPE is computed per image over pixels with 0 < gt < maxdisp, then averaged over images. With
    --dataset, each benchmark's own masks (every pixel with ground truth, and the non-occluded ones)
    and metrics (bad-1/2/3, KITTI's D1-all), per image averaged and pooled over all pixels.

    Example: stereokit eval --stage qat --run-dir runs/sf --json;  stereokit eval --all --run-dir runs/sf
    Example: stereokit eval --dataset kitti2015 --data-dir data/kitti2015 --model runs/sf/compile/model.hbm --json
    """
    from stereokit.services.eval import eval_json, run_eval, run_eval_all

    show = not (quiet or as_json)
    if dataset is not None:
        _eval_benchmark(dataset, data_dir, model, stage, run_dir, save_path, provider, _scale(scale), raw, multiscale, as_json,
                        show)
        return
    if data_dir is not None or model is not None or scale != "auto" or raw or multiscale:
        raise StereokitError("--data-dir, --model, --scale, --raw and --multiscale go with --dataset (a real benchmark); without it eval reads the run's test split.")
    results = run_eval_all(run_dir, show) if all_stages else {stage: run_eval(run_dir, stage, checkpoint, show)}
    rows = {name: eval_json(r) for name, r in results.items()}
    if as_json:
        _echo_json(rows if all_stages else rows[stage])
        return
    images = next(iter(results.values())).images
    console.print(_metrics_table(f"{run_dir} on the test split ({images} images)", rows))
    for name, r in results.items():
        console.print(f"{name}: pictures and eval.json in {r.out_dir}")


def _scale(text: str) -> Optional[float]:
    from stereokit.engine.input_scale import parse_scale

    try:
        return parse_scale(text)
    except ValueError as e:
        raise StereokitError(f"{e}.") from None


def _eval_benchmark(dataset: str, data_dir: Optional[Path], model: Optional[str], stage: str, run_dir: Path,
                    save_path: Optional[Path], provider: str, scale: Optional[float], raw: bool, multiscale: bool,
                    as_json: bool, show: bool) -> None:
    from stereokit.data.benchmark import BENCHMARKS
    from stereokit.services.eval import benchmark_json, run_eval_benchmark
    from stereokit.services.predictors import open_predictor, stage_predictor

    if dataset not in (*BENCHMARKS, "sceneflow"):
        raise StereokitError(f"--dataset {dataset!r}: not a known benchmark; known: {', '.join((*BENCHMARKS, 'sceneflow'))}.")
    if data_dir is None:
        raise StereokitError(f"--dataset {dataset} needs --data-dir, the folder the benchmark unpacks to.")
    default_run = run_dir == Path("runs/stereonet") and not (run_dir / stage / "stage.json").is_file()
    if model is not None or default_run:
        predictor = open_predictor(model, provider, scale)  # None (and no run named): the shipped model
        out = save_path or Path(f"eval_{dataset}")
    else:
        predictor = stage_predictor(run_dir, stage, scale)
        out = save_path or run_dir / stage / f"eval_{dataset}"
    predictor.raw, predictor.multiscale = raw, multiscale
    r = run_eval_benchmark(dataset, data_dir, predictor, out, show)
    if as_json:
        _echo_json(benchmark_json(r))
        return
    rows = {"all pixels (per image)": r.model_dump(), "all pixels (pooled)": r.pooled}
    if r.nonocc is not None:
        rows["non-occluded (per image)"] = r.nonocc
        rows["non-occluded (pooled)"] = r.nonocc["pooled"]
    table = Table(title=f"{r.model} on {dataset} ({r.images} images, {r.ran_on})")
    for name in ("pixels", "EPE (px)", "bad-1", "bad-2", "bad-3", "D1-all"):
        table.add_column(name, justify="left" if name == "pixels" else "right")
    for name, m in rows.items():
        table.add_row(name, f"{m['epe']:.3f}", f"{m['bad1']:.2%}", f"{m['bad2']:.2%}", f"{m['bad3']:.2%}", f"{m['d1_all']:.2%}")
    console.print(table)
    for note in r.notes:
        console.print(f"note: {note}")
    console.print(f"pictures and eval.json in {r.out_dir}")


@app.command()
@user_errors
def export(
    stage_path: Path = typer.Argument(..., help="RUN/qat (the quantized IR) or RUN/float (a float ONNX for comparison)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing export."),
    height: Optional[int] = typer.Option(None, "--height", help="Static input height, a multiple of 32 (default: deploy.input_height)."),
    width: Optional[int] = typer.Option(None, "--width", help="Static input width, a multiple of 32 (default: deploy.input_width)."),
) -> None:
    """Export the quantized IR: ONNX with QuantizeLinear/DequantizeLinear around every integer op.

    Static input shape: --height x --width (default deploy.input_height x deploy.input_width); export
    at the size your camera delivers (padded to a multiple of 32) so no pair is resized to fit.
    Inputs imgl, imgr; output disparity.

    Example: stereokit export runs/sf/qat
    Example: stereokit export runs/sf/qat --height 736 --width 1280 --force   # a 1280x720 camera
    """
    from stereokit.services.export import run_export

    r = run_export(stage_path, force=force, height=height, width=width)
    _print_moved(r.moved_aside)
    ops = ", ".join(f"{k} {v}" for k, v in sorted(r.op_counts.items(), key=lambda kv: -kv[1])[:8])
    console.print(f"exported {r.source} -> {r.model} ({r.bytes / 2**20:.1f} MiB, opset {r.opset}, input {'x'.join(map(str, r.input_shape))}); ops: {ops}")
    if r.output_step_px is not None:
        console.print(f"disparity output: {r.output_dtype}, a step of {r.output_step_px:.4f} px")


TargetOpt = typer.Option("bpu-sim", "--target", help="A shipped target (bpu-sim) or a target profile .json.")


def _print_check(r: Any, verbose: bool) -> None:
    table = Table(title=f"{r.model} on {r.target}")
    for name in ("op", "accelerator", "cpu", "GMACs"):
        table.add_column(name, justify="left" if name == "op" else "right")
    for op, row in sorted(r.by_op.items(), key=lambda kv: -kv[1]["macs"]):
        table.add_row(op, str(row["accelerator"]), str(row["cpu"]), f"{row['macs'] / 1e9:.3f}")
    console.print(table)
    if verbose:
        nodes = Table(title="nodes")
        for name in ("node", "op", "dtype", "device", "rule"):
            nodes.add_column(name)
        for n in r.nodes:
            nodes.add_row(escape(n.name), n.op, n.dtype, n.device, escape(n.rule))
        console.print(nodes)
    else:
        fallbacks: dict[tuple[str, str], int] = {}
        for n in r.nodes:
            if n.device == "cpu":
                fallbacks[(n.op, n.rule)] = fallbacks.get((n.op, n.rule), 0) + 1
        if fallbacks:
            table = Table(title="CPU fallbacks (--verbose lists every node)")
            for name in ("op", "nodes", "why"):
                table.add_column(name)
            for (op, rule), count in fallbacks.items():
                table.add_row(op, str(count), escape(rule))
            console.print(table)
        for n in r.nodes:  # a precision the target cannot run is named node by node
            if n.device == "cpu" and " activations: " in n.rule:
                console.print(Text.assemble(("precision: ", "yellow"), f"{n.name} ({n.op}): {n.rule}"), highlight=False, soft_wrap=True)
    dtypes = ", ".join(f"{t} {c}" for t, c in sorted(r.dtypes.items()))
    console.print(f"{r.accelerator_share:.1%} of {r.macs / 1e9:.3f} GMACs on the accelerator; {r.fallbacks} node(s) on the CPU; nodes by activation type: {dtypes}")
    for e in r.errors[:5]:
        err_console.print(Text.assemble(("compile would fail: ", "red"), e), highlight=False, soft_wrap=True)


@app.command()
@user_errors
def check(
    model: Path = typer.Argument(..., help="RUN/export (or any .onnx)."),
    target: str = TargetOpt,
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any node falls back to the CPU."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every node, not only the fallbacks."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check the IR against a target: per node, accelerator or CPU fallback and the rule that decided.

    Example: stereokit check runs/sf/export --target bpu-sim --strict
    """
    from stereokit.services.check import run_check

    r = run_check(model, target)
    if as_json:
        _echo_json(r.model_dump(mode="json"))
    else:
        _print_check(r, verbose)
    if r.errors:
        raise StereokitError(f"{r.model}: {len(r.errors)} problem(s) would break compile; first: {r.errors[0]}", exit_code=1)
    if strict and r.fallbacks:
        raise StereokitError(f"{r.model}: {r.fallbacks} node(s) fall back to the CPU (--strict).", exit_code=1)


@app.command("compile")
@user_errors
def compile_(
    path: Path = typer.Argument(..., help="RUN/qat (exports first if needed) or RUN/export."),
    target: str = TargetOpt,
    strict: bool = typer.Option(False, "--strict", help="Refuse if any node would fall back to the CPU."),
    force: bool = typer.Option(False, "--force", help="Replace an existing compiled model."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="ort or openvino: that runtime's model in RUN/compile-NAME/ (default: each installed runtime timed here; the fastest that is as accurate as ONNX Runtime on generated scenes goes to RUN/compile/)."),
    height: Optional[int] = typer.Option(None, "--height", help="From RUN/qat or RUN/calibration: export at this input height first (a multiple of 32)."),
    width: Optional[int] = typer.Option(None, "--width", help="From RUN/qat or RUN/calibration: export at this input width first (a multiple of 32)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Compile the IR into a self-contained integer model (RUN/compile/model.hbm) with perf.json/perf.html.

    The model's input size is its export's (default deploy.input_*); --height/--width export at another.

    Example: stereokit compile runs/sf/qat --target bpu-sim
    Example: stereokit compile runs/sf/qat --runtime openvino     # -> runs/sf/compile-openvino/model.hbm
    Example: stereokit compile runs/sf/calibration --height 736 --width 1280
    """
    from stereokit.deploy.runtime import EPE_REL_BAR
    from stereokit.services.compile import MARGIN, run_compile

    r = run_compile(path, target, strict, force, runtime=runtime, height=height, width=width, show_progress=not quiet)
    _print_moved(r.moved_aside)
    if r.note:
        console.print(r.note)
    ops = ", ".join(f"{k} {v}" for k, v in sorted(r.op_counts.items(), key=lambda kv: -kv[1])[:6])
    console.print(f"compiled -> {r.hbm} ({r.bytes / 2**20:.2f} MiB) for {r.target}: {r.accelerator_share:.1%} of MACs on the accelerator, {r.fallbacks} CPU node(s); {ops}")
    names = {"ort": "ONNX Runtime CPU", "openvino": "OpenVINO CPU"}
    ran = names.get(r.runtime, r.runtime)
    if r.runtime_ms:
        timed = ", ".join(f"{names.get(k, k)} {v:.1f} ms" for k, v in sorted(r.runtime_ms.items(), key=lambda kv: kv[1]))
        judged = ", ".join(f"{names.get(k, k)} {v:.3f} px" for k, v in r.runtime_epe.items())
        console.print(f"runtime: {ran} ({timed}{f'; EPE on {r.runtime_epe_scenes} generated scenes: {judged}' if judged else ''}; "
                      f"another replaces ONNX Runtime when under {MARGIN:g}x its time and its EPE there is within "
                      f"{EPE_REL_BAR:.1%} of ONNX Runtime's)")
    console.print(f"estimate on {r.target}: {r.estimated_latency_ms:.2f} ms ({r.estimated_fps:.1f} FPS); measured here: "
                  f"compiled ({ran}) {r.latency_ms['compiled_int8_ms']:.1f} ms vs float (ONNX Runtime CPU) {r.latency_ms['onnx_float_ms']:.1f} ms -> {r.perf_html}")
    if r.runtime_float_nodes:
        names = ", ".join(n["node"] for n in r.runtime_float_nodes[:4])
        console.print(f"note: {ran} runs {len(r.runtime_float_nodes)} node(s) in float that check puts on the integer path "
                      f"(perf.json lists them; --strict refuses): {names}{', ...' if len(r.runtime_float_nodes) > 4 else ''}")


def _ran_on(runtime: str, provider: str) -> str:
    """'onnxruntime 1.x, cpu'; OpenVINO's provider already names it."""
    return provider if provider.startswith(runtime.split()[0]) else f"{runtime}, {provider}"


@app.command("validate-bpu")
@user_errors
def validate_bpu(
    path: Path = typer.Argument(..., help="RUN/compile or RUN/compile-NAME."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    provider: str = typer.Option("auto", "--provider", help="ONNX Runtime provider: auto (TensorRT/CUDA where a GPU is visible, else CPU), cpu, cuda or tensorrt."),
) -> None:
    """Run the compiled model over the test split (ONNX Runtime stands in for the board): EPE and
    agreement with the torch fixed-point model. Exits 1 when agreement is outside deploy.max_* (OpenVINO,
    which rounds its own way: when its EPE is more than 0.5% above the fixed-point model's).

    Example: stereokit validate-bpu runs/sf/compile --json
    """
    from stereokit.services.validate_bpu import run_validate

    r = run_validate(path, show_progress=not (quiet or as_json), provider=provider)
    if as_json:
        _echo_json({k: getattr(r, k) for k in ("epe", "bad1", "bad3", "pixels", "mean_abs_diff_px", "max_abs_diff_px", "frac_over_0_5px", "int_infer_epe",
                                       "int_infer_epe_own_size", "compiled_size", "runtime", "provider", "placement")})
    else:
        console.print(_metrics_table(f"compiled model on the test split ({r.images} images)", {"compiled": r.model_dump()}))
        console.print(f"agreement with int_infer on the same input (EPE {r.int_infer_epe:.4f}): mean |diff| {r.mean_abs_diff_px:.4f} px, "
                      f"max {r.max_abs_diff_px:.3f} px, {r.frac_over_0_5px:.3%} of pixels over 0.5 px; ran on {_ran_on(r.runtime, r.provider)}")
        if r.int_infer_epe_own_size is not None:
            h, w = r.compiled_size
            console.print(f"the test images were padded to the compiled {w}x{h}: int_infer's EPE is {r.int_infer_epe_own_size:.4f} at "
                          f"their own size and {r.int_infer_epe:.4f} padded (the padding's cost, not the compile's; "
                          "compile with --height/--width of your images to avoid it)")
        if "epe_rel_diff" in r.bar:
            console.print(f"judged by EPE (at most {r.bar['epe_rel_diff']:.1%} above int_infer's): this runtime quantizes with "
                          "its own rounding, so single pixels differ either way (docs/deployment.md)")
    if not r.passed:
        raise StereokitError(f"{path}: the compiled model disagrees with int_infer beyond the bar {r.bar}.", exit_code=1)


@app.command()
@user_errors
def infer(
    model: Optional[str] = typer.Option(None, "--model", help="A shipped model (default: shipped), a weights .pt, a .hbm, an .onnx, or a run's float/calibration/qat directory."),
    imgl: Optional[Path] = typer.Option(None, "--imgl", help="Left image."),
    imgr: Optional[Path] = typer.Option(None, "--imgr", help="Right image (same size)."),
    baseline: Optional[float] = typer.Option(None, "--baseline", help="Camera baseline in metres (needs --f)."),
    focal: Optional[float] = typer.Option(None, "--f", help="Focal length in pixels (needs --baseline)."),
    save_path: Path = typer.Option(Path("infer_out"), "--save-path", help="Folder for the outputs."),
    model_inputs: Optional[str] = typer.Option(None, "--model-inputs", help="imgl:L,imgr:R,baseline:B,f:F (the reference tool's form)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    provider: str = typer.Option("auto", "--provider", help="ONNX Runtime provider: auto (TensorRT/CUDA where a GPU is visible, else CPU), cpu, cuda or tensorrt."),
    rig: Optional[Path] = typer.Option(None, "--rig", help="A rig file: the pair is raw, rectify it first and take f and the baseline from the rig."),
    max_depth: Optional[float] = typer.Option(None, "--max-depth", help="Leave points farther than this (in the baseline's unit) out of depth_mm.png and cloud.ply."),
    scale: str = typer.Option("auto", "--scale", help="auto: run the pair at the scale the model is accurate at (small disparities upscaled, ones past its range downscaled); 1: at its own size; or a factor."),
    raw: bool = typer.Option(False, "--raw", help="The network's disparity as it comes, without infer's clean-up (the strip at the left edge that the right view cannot see raised to its row's seen disparity, then a 3x3 median)."),
    multiscale: bool = typer.Option(False, "--multiscale", help="Run the pair at 0.9x, 1x and 1.1x the chosen scale and keep each pixel's median: about 4% lower EPE on generated pairs, three passes instead of one."),
) -> None:
    """Disparity (PFM, 16-bit PNG x256, colour) and, with f and a baseline, depth (PFM, uint16 mm PNG) and a point cloud (PLY).

    Example: stereokit infer --imgl l.png --imgr r.png   (the shipped model)
    Example: stereokit infer --model runs/sf/compile/model.hbm --imgl l.png --imgr r.png --baseline 0.54 --f 1050 --save-path out
    Example: stereokit infer --model runs/sf/compile/model.hbm --rig rig.yaml --imgl raw_l.png --imgr raw_r.png --max-depth 10
    Example: stereokit infer --imgl l.png --imgr r.png --scale 1   (at the pair's own size, one pass)
    Example: stereokit infer --imgl l.png --imgr r.png --multiscale   (the median of three scales: slower, more accurate)
    """
    from stereokit.services.infer import parse_model_inputs, run_infer

    extra = parse_model_inputs(model_inputs) if model_inputs else {}
    imgl = imgl or (Path(extra["imgl"]) if "imgl" in extra else None)
    imgr = imgr or (Path(extra["imgr"]) if "imgr" in extra else None)
    baseline = baseline if baseline is not None else (float(extra["baseline"]) if "baseline" in extra else None)
    focal = focal if focal is not None else (float(extra["f"]) if "f" in extra else None)
    if imgl is None or imgr is None:
        raise StereokitError("--imgl and --imgr are required (or imgl/imgr in --model-inputs).")
    r = run_infer(model, imgl, imgr, save_path, baseline, focal, provider, rig, max_depth, _scale(scale), raw, multiscale)
    if as_json:
        _echo_json(r.model_dump())
        return
    depth = f", median depth {r.depth_median:.2f} {r.unit}" if r.depth_median is not None else ""
    console.print(f"disparity {r.disparity_min:.2f}..{r.disparity_max:.2f} px{depth}; {r.handling}; ran on {r.provider}")
    for name, where in r.outputs.items():
        console.print(f"  {name}: {where}")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the data, the run and the report go."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Scale the fixed schedule (about 7.5 minutes on 2 CPU cores) to roughly this long; the summary records the factor."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Start over instead of skipping finished stages."),
) -> None:
    """The whole flow on generated data: synth, pack, calops, train (a fine-tune of the shipped model
    on the generated scenes), calibrate, qat, eval, export, check, compile, validate-bpu, infer; one
    table at the end, report.html and summary.json.

    Example: stereokit demo --out runs/demo
    """
    from stereokit.services.demo import run_demo

    r = run_demo(out, minutes, device, force, say=err_console.print)
    table = Table(title=f"stereokit demo ({r.out})")
    for name in ("stage", "EPE (px)", "bad-3"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    for stage_name, m in r.stages.items():
        table.add_row(stage_name, f"{m['epe']:.3f}", f"{m['bad3']:.2%}")
    table.add_section()
    table.add_row("constant prediction", f"{r.constant_baseline_epe:.3f}", "")
    console.print(table)
    console.print(f"params {r.params:,}; {r.macs / 1e9:.3f} GMACs at the demo size; compiled model {r.hbm_bytes / 1024:.0f} KiB, "
                  f"{r.accelerator_share:.1%} of MACs on the integer path")
    console.print("latency on this CPU: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r.latency_ms.items()))
    bar = ", ".join(f"{k} <= {v:g}" for k, v in r.validate_bar.items())
    console.print(f"agreement compiled vs int_infer: mean {r.agreement['mean_abs_diff_px']:.4f} px, max {r.agreement['max_abs_diff_px']:.3f} px, "
                  f"{r.agreement['frac_over_0_5px']:.2%} of pixels over 0.5 px; validate-bpu's bar ({bar}) "
                  + ("met" if r.validate_passed else "not met (docs/performance.md: the maxdisp-192 model's rounding spread)"))
    console.print(f"report: {r.out / 'report.html'}; summary: {r.out / 'summary.json'}")
    for name in ("loss_curve", "compiled", "perf", "infer_side_by_side"):
        console.print(f"  {name}: {r.artifacts[name]}")


@rig_app.command("calibrate")
@user_errors
def rig_calibrate(
    folder: Path = typer.Argument(..., help="Chessboard pairs: left/ and right/ with the same names, or leftNN/rightNN images."),
    board: str = typer.Option(..., "--board", help="Inner corners, COLUMNSxROWS (e.g. 9x6)."),
    square: float = typer.Option(..., "--square", help="Side of one square, in --unit."),
    unit: str = typer.Option("m", "--unit", help="The unit of --square; the baseline, T and depth come out in it."),
    out: Path = typer.Option(Path("rig.yaml"), "--out", help="The rig file to write (pictures go beside it)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing rig file."),
    as_json: bool = typer.Option(False, "--json", help="Print the errors, baseline and focal length as JSON."),
) -> None:
    """Stereo calibration and rectification from chessboard pairs -> rig.yaml (OpenCV's K, D, R, T, R1, R2, P1, P2, Q).

    Example: stereokit rig calibrate shots/ --board 9x6 --square 0.025 --out rig.yaml
    """
    from stereokit.services.rig import run_rig_calibrate

    r = run_rig_calibrate(folder, board, square, out, unit, force, show_progress=not as_json)
    if as_json:
        _echo_json({k: v for k, v in r.model_dump(mode="json").items() if k != "pictures"})
        return
    if r.skipped:
        console.print(f"board not found in both views of {len(r.skipped)} pairs, skipped: {', '.join(r.skipped)}")
    console.print(f"{r.rig}: {len(r.used)} pairs, RMS {r.rms:.3f} px, rectified rows {r.rectified_dy_mean:.3f} px mean / "
                  f"{r.rectified_dy_max:.3f} max; baseline {r.baseline:.4f} {r.unit}, focal {r.focal_px:.1f} px ({r.camera_model})")
    console.print(f"pictures: {r.pictures[-1]} and {r.pictures[0].parent}/")


@app.command()
@user_errors
def rectify(
    rig: Path = typer.Option(..., "--rig", help="The rig file from 'stereokit rig calibrate'."),
    imgl: Optional[Path] = typer.Option(None, "--imgl", help="Raw left image."),
    imgr: Optional[Path] = typer.Option(None, "--imgr", help="Raw right image."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="A folder of raw pairs instead (left/ and right/, or leftNN/rightNN)."),
    save_path: Path = typer.Option(Path("rectified"), "--save-path", help="Writes left.png and right.png (or left/ and right/)."),
    crop: bool = typer.Option(False, "--crop", help="Keep only the window valid in both views."),
) -> None:
    """Raw pairs -> rectified pairs (rows are epipolar lines), with a rig.

    Example: stereokit rectify --rig rig.yaml --imgl raw_l.png --imgr raw_r.png --save-path rect
    """
    from stereokit.services.rectify import run_rectify

    r = run_rectify(rig, save_path, imgl, imgr, pairs, crop)
    cropped = f", cropped to the valid window x={r.cropped[0]} y={r.cropped[1]} {r.cropped[2]}x{r.cropped[3]}" if r.cropped else ""
    console.print(f"rectified {r.pairs} pair(s) into {r.out} ({r.size[0]}x{r.size[1]}{cropped})")


def main() -> None:
    from stereokit.allocator import keep_large_blocks

    keep_large_blocks()  # before the first large tensor; see stereokit/allocator.py
    # torch.ao's eager quantization warns on every use that it is deprecated in favour of torchao;
    # the choice is documented in docs/quantization.md, so users are spared the repetition.
    warnings.filterwarnings("ignore", message=".*(deprecated|torchao).*", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    app()


if __name__ == "__main__":
    sys.exit(main())
