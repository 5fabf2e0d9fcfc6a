"""`stereokit demo`: the whole flow on generated data, each stage through the same service its own
command calls: synth -> pack -> calops -> train float -> calibrate -> qat -> eval -> export ->
check -> compile -> validate-bpu -> infer. Finished stages are skipped (their hashes verified)."""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime
import torch
from pydantic import BaseModel
from rich.console import Console

from stereokit.config import StereokitConfig, config_to_yaml, load_config
from stereokit.data.dataset import SceneFlowLMDB
from stereokit.data.sceneflow import list_path, read_split
from stereokit.data.synth import SceneOptions
from stereokit.errors import StageError, StereokitError
from stereokit.paths import folder_to_write
from stereokit.models import build_stereonet
from stereokit.models.inference import prepare_for_inference
from stereokit.lineage import require_stage
from stereokit.runs import atomic_write_text, read_stage_record, run_config
from stereokit.weights import load_shipped
from stereokit.data.pairs import read_pair
from stereokit.data.real_pairs import motorcycle
from stereokit.data.validity import valid_mask
from stereokit.deploy.perf import median_ms
from stereokit.engine.metrics import BenchmarkMetrics
from stereokit.engine.plots import colorize, write_png
from stereokit.services.predictors import open_predictor
from stereokit.services.calibrate import run_calibrate
from stereokit.services.calops import run_calops
from stereokit.services.check import run_check
from stereokit.services.compile import run_compile
from stereokit.services.eval import eval_json, run_eval_all
from stereokit.services.export import run_export
from stereokit.services.infer import run_infer
from stereokit.services.pack import run_pack
from stereokit.services.qat import run_qat
from stereokit.services.synth import run_synth
from stereokit.services.train import run_train_float
from stereokit.services.validate_bpu import run_validate

HEIGHT, WIDTH, SYNTH_MAXDISP = 128, 256, 48
BATCH = 4
# The generator's scenes, a little gentler: fewer and larger objects, no textureless or striped ones,
# milder cameras. What a few CPU minutes can learn to a sharp result.
SCENES = SceneOptions(min_objects=4, max_objects=12, object_size=(0.08, 0.6), weak_share=0.0, repetitive_share=0.0,
                      noise=1.0, blur=0.3)
# The small from-scratch model (the demo's until 2026-12-04; the benchmarks' small model): one residual
# block per neck stage, the cost volume at 1/8 (D = 8 at maxdisp 64), refinements at 1/4, 1/2, 1/1.
SMALL_MODEL = [
    "model.maxdisp=64", "model.cost_scale=8", "model.neck_blocks=[1, 1, 1, 1]",
    "model.out_channels=[16, 16, 32, 64, 64, 16]", "model.groups=16", "model.agg_channels=16",
    "model.agg_blocks=2", "model.refine_levels=3", "model.refine_channels=16", "model.refine_dilations=[1, 2, 4, 1]",
    "model.loss_weights=[0.5, 0.7, 1.0, 1.0]",
]
# The demo fine-tunes the shipped model on its own scenes (its network comes from the weights, see
# shipped_network): from scratch, the small model reached test EPE 2.4-2.8 px in the same minutes.
DEMO_OVERRIDES = [
    # whole 128x256 scenes, 4 a batch (the pixels of 16 64x128 crops): fine-tuning the shipped model,
    # val EPE 1.121 after 300 steps against the crops' 1.156 after 500 (docs/performance.md)
    f"data.crop=[{HEIGHT}, {WIDTH}]", "data.num_workers=0",
    f"train.float.batch_size={BATCH}", "train.float.lr=1e-3", "train.float.warmup_epochs=1", "train.float.val_every_epochs=5",
    "train.float.residual_lr_scale=1.0", "train.float.channels_last=true",
    # bf16 where the CPU has it in hardware (float32 elsewhere, said in one line): on an AMX Xeon the
    # float stage took 71 s instead of 123 s, validation 1.1056 against 1.1049 px (docs/performance.md)
    "train.float.amp=bf16",
    "train.float.log_every_steps=10", "train.float.checkpoint_every_steps=200",
    "train.calibration.steps=10", f"train.calibration.batch_size={BATCH}",
    f"train.qat.batch_size={BATCH}", "train.qat.lr=5e-5", "train.qat.log_every_steps=10", "train.qat.val_every_epochs=5",
    f"deploy.input_height={HEIGHT}", f"deploy.input_width={WIDTH}",
]
INIT = "shipped"
# A fixed schedule, so two runs give the same numbers; `--minutes` scales it (the summary says by how much).
# 400 float steps, not 300: validation 1.106 -> 1.093 px from version 7 (1.109 -> 1.086 from version 6).
FLOAT_STEPS, QAT_STEPS, NUM_TRAIN, NUM_TEST = 400, 60, 400, 24
# The whole schedule on 2 cores of an AVX2 EPYC (no bf16): its 300-step demo took 6 min 39 s, its
# float stage 221 s at 300 steps and 311 s at 400 (docs/performance.md).
NOMINAL_MINUTES = 8.2


@dataclass(frozen=True)
class Schedule:
    float_steps: int
    qat_steps: int
    factor: float

    @classmethod
    def scaled(cls, minutes: float | None) -> "Schedule":
        factor = 1.0 if minutes is None else minutes / NOMINAL_MINUTES
        return cls(max(10, round(FLOAT_STEPS * factor)), max(5, round(QAT_STEPS * factor)), factor)


class DemoResult(BaseModel):
    out: Path
    stages: dict[str, dict[str, float]]
    constant_baseline_epe: float
    params: int
    macs: int
    hbm_bytes: int
    latency_ms: dict[str, float]
    latency_ran_on: dict[str, str]
    artifacts: dict[str, str]
    accelerator_share: float
    agreement: dict[str, float]
    validate_passed: bool  # validate-bpu's agreement bar (deploy.max_*), met or not
    validate_bar: dict[str, float]
    float_init: dict[str, Any]


def shipped_network() -> list[str]:
    """The shipped model's network settings as overrides: the demo's float stage starts from its weights."""
    return [f"model.{k}={json.dumps(v)}" for k, v in load_shipped(INIT).model.model_dump(mode="json").items()]


def demo_config(out: Path, num_train: int, schedule: Schedule, device: str, network: list[str]) -> StereokitConfig:
    """network: the model.* overrides of the weights the float stage starts from (shipped_network())."""
    data = out / "data"
    qat_epochs = max(1, schedule.qat_steps // max(1, num_train // BATCH))
    return load_config(None, network + DEMO_OVERRIDES + [
        f"device={device}",
        f"data.data_dir={data / 'SceneFlow'}", f"data.train_lmdb={data / 'lmdb' / 'train_lmdb'}",
        f"data.test_lmdb={data / 'lmdb' / 'test_lmdb'}",
        f"data.val_count={min(24, max(1, num_train // 5))}",
        f"train.float.max_steps={schedule.float_steps}", f"train.qat.max_steps={schedule.qat_steps}",
        f"train.qat.lr_milestones=[{max(1, qat_epochs * 4 // 5)}]",
    ])


def constant_baseline(cfg: StereokitConfig) -> float:
    """EPE on the test split of predicting the training split's median disparity everywhere."""
    train, test = SceneFlowLMDB(cfg.data.train_lmdb), SceneFlowLMDB(cfg.data.test_lmdb)
    values = np.concatenate([d[valid_mask(d, cfg.model.maxdisp)] for d in (train.raw(i)["disp"] for i in range(len(train)))])
    constant = float(np.median(values))
    errors = []
    for i in range(len(test)):
        d = test.raw(i)["disp"]
        valid = valid_mask(d, cfg.model.maxdisp)
        if valid.any():
            errors.append(float(np.abs(d[valid] - constant).mean()))
    return float(np.mean(errors))


def _finished(run: Path, stage: str) -> bool:
    try:
        require_stage(run, stage)
        return True
    except StageError:
        return False


def run_demo(out: Path = Path("runs/demo"), minutes: float | None = None, device: str = "auto", force: bool = False,
             num_train: int = NUM_TRAIN, num_test: int = NUM_TEST, say: Callable[[str], None] | None = None) -> DemoResult:
    out = folder_to_write(Path(out), "--out")
    say = say or Console(stderr=True, markup=False).print
    if minutes is not None and minutes <= 0:
        raise StereokitError(f"--minutes: {minutes} must be positive.")
    network = shipped_network()  # read before anything is written: a damaged install is refused here
    began = time.perf_counter()
    seconds: dict[str, float] = {}
    if force and out.exists():
        import shutil

        shutil.rmtree(out)
    run = out / "run"
    data = out / "data"

    def stage(name: str, done: bool, action: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        if done:
            say(f"- {name}: already done, skipped")
            return None
        result = action()
        seconds[name] = round(time.perf_counter() - start, 1)
        say(f"✓ {name} ({seconds[name]:.1f} s)")
        return result

    if not list_path(data / "SceneFlow", "test").is_file():
        stage("synth", False, lambda: run_synth(data / "SceneFlow", num_train, num_test, HEIGHT, WIDTH, SYNTH_MAXDISP,
                                                seed=0, workers=2, force=True, show_progress=False, options=SCENES))
    else:
        stage("synth", True, lambda: None)
    for split in ("train", "test"):
        target = data / "lmdb" / f"{split}_lmdb"
        stage(f"pack {split}", target.exists(), lambda s=split: run_pack(data / "SceneFlow", s, data / "lmdb", force=True, show_progress=False))

    schedule = Schedule.scaled(minutes)
    if (run / "config.yaml").is_file():
        cfg = run_config(run)
        schedule = Schedule(cfg.train.float.max_steps or 0, cfg.train.qat.max_steps or 0, schedule.factor)
    else:
        cfg = demo_config(out, num_train, schedule, device, network)
        scaled = f" (the schedule scaled by {schedule.factor:.3g} for --minutes {minutes:g})" if minutes is not None else ""
        say(f"schedule: {schedule.float_steps} float and {schedule.qat_steps} QAT steps of batch {cfg.train.float.batch_size}{scaled}")
    atomic_write_text(out / "config.yaml", config_to_yaml(cfg))
    cost = stage("calops", False, lambda: run_calops(cfg, HEIGHT, WIDTH))
    stage(f"train float (from the {INIT} model)", _finished(run, "float"),
          lambda: run_train_float(cfg, run, force=True, show_progress=True, init=INIT))
    stage("calibrate", _finished(run, "calibration"), lambda: run_calibrate(run, force=True, show_progress=False))
    stage("qat", _finished(run, "qat"), lambda: run_qat(run, force=True, show_progress=True))
    evals = stage("eval (float, calibration, qat, int_infer)", False, lambda: run_eval_all(run, show_progress=False))
    stage("export", _finished(run, "export"), lambda: run_export(run / "qat", force=True))
    check = stage("check", False, lambda: run_check(run / "export"))
    stage("compile", _finished(run, "compile"), lambda: run_compile(run / "qat", force=True, show_progress=False))
    validation = stage("validate-bpu", False, lambda: run_validate(run / "compile", show_progress=False))
    sample = read_split(data / "SceneFlow", "test")[0][0]
    inferred = stage("infer", False, lambda: run_infer(run / "compile" / "model.hbm", data / "SceneFlow" / sample.left,
                                                       data / "SceneFlow" / sample.right, out / "infer", 0.54, 1050.0))
    beside = stage("shipped model beside the demo's", False, lambda: shipped_beside_demo(
        run / "compile" / "model.hbm", data / "SceneFlow" / sample.left, data / "SceneFlow" / sample.right, out / "shipped"))
    stages = {name: eval_json(r) for name, r in evals.items()}
    stages["compiled"] = {"epe": validation.epe, "bad1": validation.bad1, "bad3": validation.bad3, "pixels": validation.pixels}
    compile_metrics = read_stage_record(run, "compile").metrics
    latency = {
        "torch_float": _torch_latency_ms(cfg),
        "onnx_float": compile_metrics["latency_ms"]["onnx_float_ms"],
        "compiled": compile_metrics["latency_ms"]["compiled_int8_ms"],
    }
    latency_ran_on = {"torch_float": f"torch {torch.__version__}, inference path, CPU",
                      "onnx_float": f"ONNX Runtime {onnxruntime.__version__}, CPU",
                      "compiled": f"{validation.provider} (plain compile kept it, the fastest installed here)"}
    artifacts = {
        "config": str(out / "config.yaml"), "train_lmdb": str(cfg.data.train_lmdb), "test_lmdb": str(cfg.data.test_lmdb),
        "float_checkpoint": str(run / "float" / "best.pt"), "loss_curve": str(run / "float" / "loss.png"),
        "calibration_checkpoint": str(run / "calibration" / "checkpoint.pt"), "qat_checkpoint": str(run / "qat" / "best.pt"),
        "ir": str(run / "export" / "model.onnx"), "compiled": str(run / "compile" / "model.hbm"),
        "perf": str(run / "compile" / "perf.html"), **{f"infer_{k}": v for k, v in inferred.outputs.items()},
        **{f"beside_{k}": v for k, v in beside["pictures"].items()},
    }
    result = DemoResult(
        out=out, stages=stages, constant_baseline_epe=constant_baseline(cfg), params=cost.params, macs=cost.macs,
        hbm_bytes=(run / "compile" / "model.hbm").stat().st_size, latency_ms=latency, latency_ran_on=latency_ran_on, artifacts=artifacts,
        accelerator_share=check.accelerator_share,
        agreement={"mean_abs_diff_px": validation.mean_abs_diff_px, "max_abs_diff_px": validation.max_abs_diff_px,
                   "frac_over_0_5px": validation.frac_over_0_5px},
        validate_passed=validation.passed, validate_bar=validation.bar,
        float_init={**read_stage_record(run, "float").details.get("init", {}), "steps": schedule.float_steps},
    )
    seconds["total"] = round(time.perf_counter() - began, 1)
    summary = {"stages": stages, "float_init": result.float_init, "real_pair": beside["real_pair"],
               "agreement": {**result.agreement, "passed": result.validate_passed, "bar": result.validate_bar}, "constant_baseline_epe": result.constant_baseline_epe, "params": result.params,
               "macs": result.macs, "latency_ms": latency, "latency_ran_on": latency_ran_on, "schedule": asdict(schedule), "seconds": seconds,
               "artifacts": artifacts}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "report.html", report_html(result, run))
    return result


def shipped_beside_demo(demo_hbm: Path, left_path: Path, right_path: Path, out: Path) -> dict[str, Any]:
    """The demo's compiled model and the shipped model on one generated test scene and on the real
    Motorcycle pair (half size): pictures, and each model's EPE / bad-2 on the real pair."""
    demo, shipped = open_predictor(demo_hbm, "cpu"), open_predictor(None)
    left, right = read_pair(left_path, right_path)
    scene = [demo(left, right)[0], shipped(left, right)[0]]
    vmax = max(float(scene[0].max()), 1.0)
    write_png(out / "scene.png", np.concatenate([left] + [colorize(d, vmax) for d in scene], axis=1))
    pair = motorcycle(0.5)
    top = float(pair["disp"][pair["valid"]].max())
    real = {"demo compiled": demo(pair["left"], pair["right"])[0], "shipped float": shipped(pair["left"], pair["right"])[0]}
    gt = colorize(np.where(pair["valid"], pair["disp"], np.nan), top)
    write_png(out / "motorcycle.png", np.concatenate([pair["left"], gt] + [colorize(d, top) for d in real.values()], axis=1))
    scores = {}
    for name, disp in real.items():
        scores[name] = {k: v for k, v in BenchmarkMetrics().update(disp, pair["disp"], pair["valid"]).items() if k in ("epe", "bad2", "bad3")}
    return {"pictures": {"scene": str(out / "scene.png"), "motorcycle": str(out / "motorcycle.png")}, "real_pair": scores}


def _torch_latency_ms(cfg: StereokitConfig, runs: int = 3) -> float:
    from stereokit.models import DeployModel

    model = DeployModel(prepare_for_inference(build_stereonet(cfg.model)))
    x = torch.zeros(1, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        return median_ms(lambda: model(x, x), runs)


def report_html(r: DemoResult, run: Path) -> str:
    def img(path: Path) -> str:
        if not Path(path).is_file():
            return ""
        return f"<img src='data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}' style='max-width:100%'>"

    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['epe']:.4f}</td><td>{v['bad1']:.2%}</td><td>{v['bad3']:.2%}</td></tr>"
        for k, v in r.stages.items()
    )
    # four distinct test scenes: the float model on the first two, the integer model on the next two
    pictures = sorted((run / "float" / "eval").glob("*.png"))[:2] + sorted((run / "int_infer" / "eval").glob("*.png"))[2:4]
    return "\n".join([
        "<!doctype html><meta charset='utf-8'><title>stereokit demo</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 10px;text-align:right}td:first-child{text-align:left}</style>",
        "<h1>stereokit demo</h1>",
        f"<p>Constant-prediction baseline EPE: {r.constant_baseline_epe:.4f} px. Params {r.params:,}, "
        f"{r.macs / 1e9:.3f} GMACs at {WIDTH}x{HEIGHT}; compiled model {r.hbm_bytes / 1024:.0f} KiB, "
        f"{r.accelerator_share:.1%} of MACs on the integer path.</p>",
        f"<p>The float stage fine-tuned the {html.escape(str(r.float_init.get('from', '')))} model "
        f"(sha256 {html.escape(str(r.float_init.get('sha256', ''))[:12])}) for {r.float_init.get('steps', 0)} steps on the "
        "demo's generated scenes; calibration, QAT and the integer stages follow from it.</p>",
        "<table><tr><th>stage</th><th>EPE (px)</th><th>bad-1</th><th>bad-3</th></tr>" + rows + "</table>",
        "<h2>Latency (this machine's CPU, ms)</h2><table><tr><th>model</th><th>ms</th><th>ran on</th></tr>"
        + "".join(f"<tr><td>{k}</td><td>{v:.1f}</td><td>{html.escape(r.latency_ran_on.get(k, ''))}</td></tr>"
                  for k, v in r.latency_ms.items()) + "</table>",
        "<h2>Loss curves</h2>", img(run / "float" / "loss.png"), img(run / "qat" / "loss.png"),
        "<h2>Samples (left | ground truth | prediction | error)</h2>", *[img(p) for p in pictures],
        "<h2>Inference on one test pair (left | disparity | depth)</h2>",
        img(Path(r.artifacts.get("infer_side_by_side", ""))), img(Path(r.artifacts.get("infer_depth_png", ""))),
        "<h2>The shipped model beside the demo's (left | demo compiled | shipped float)</h2>",
        img(Path(r.artifacts.get("beside_scene", ""))),
        "<h2>A real photograph: Middlebury's Motorcycle, half size (left | ground truth | demo | shipped)</h2>",
        img(Path(r.artifacts.get("beside_motorcycle", ""))),
        "<h2>Artifacts</h2><ul>" + "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in r.artifacts.items()) + "</ul>",
    ])
