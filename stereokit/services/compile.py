"""`stereokit compile RUN/qat|RUN/export`: the integer model container (.hbm) with a performance
estimate on the target and measured latency on this machine. Plain compile times every installed
runtime's model of the IR here and keeps the fastest; `--runtime NAME` writes that one to RUN/compile-NAME."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from pydantic import BaseModel

from stereokit import __version__
from stereokit.config import DataConfig, deploy_size, stage_config_hash
from stereokit.data.synth import render_scene
from stereokit.data.transforms import preprocess_image
from stereokit.deploy import openvino_runtime
from stereokit.deploy.checker import CheckReport, check_model
from stereokit.deploy.compiler import CompiledNode, chains_left, confirm_check, lower_to_integer, op_counts
from stereokit.deploy.graph import Graph
from stereokit.deploy.hbm import FORMAT_VERSION, pack_hbm
from stereokit.deploy.ir import input_size, ir_metadata, islands_for, load_ir, metadata
from stereokit.deploy.onnx_export import export_onnx
from stereokit.deploy.perf import estimate, measure_latency_ms, perf_html, rows_json, summary
from stereokit.deploy.runtime import EPE_REL_BAR, open_runtime_model
from stereokit.deploy.target import TargetProfile, load_target
from stereokit.errors import StereokitError
from stereokit.models.postprocess import DeployModel
from stereokit.lineage import Lineage, check_rerun, clear_for_rerun, require_stage, stage_lock
from stereokit.progress import progress_bar
from stereokit.runs import StageRecord, recorded_artifact, atomic_write_bytes, atomic_write_text, finish_stage, run_config, stage_dir, write_stage_record
from stereokit.services.export import run_export
from stereokit.services.stages import float_model, source_checkpoint


class CompileResult(BaseModel):
    hbm: Path
    runtime: str
    runtime_ms: dict[str, float] = {}  # plain compile: each installed runtime's measured latency here
    runtime_epe: dict[str, float] = {}  # plain compile, when a faster runtime was judged: its EPE and ONNX Runtime's
    runtime_epe_scenes: int = 0  # on this many generated scenes
    runtime_float_nodes: list[dict[str, str]] = []
    bytes: int
    target: str
    op_counts: dict[str, int]
    accelerator_share: float
    fallbacks: int
    estimated_latency_ms: float
    estimated_fps: float
    latency_ms: dict[str, float]
    perf_json: Path
    perf_html: Path
    source_stage: str
    note: str | None = None
    moved_aside: list[str] = []


def openvino_float_nodes(blob: bytes, compiled_nodes: list, name: str) -> list[dict[str, str]]:
    """Nodes check and ONNX Runtime's lowering run as integer that OpenVINO's CPU plugin runs in float
    (read from its runtime model): the per-runtime confirmation of check."""
    integer = [n for n in compiled_nodes if n.runs == "integer"]
    precisions = openvino_runtime.node_precisions(openvino_runtime.compile_blob(blob, name), [n.name for n in integer])
    return [{"node": n.name, "op": n.op, "precision": precisions[n.name]} for n in integer
            if precisions[n.name] not in ("u8", "i8", "fused")]


def _run_dir_of(path: Path) -> Path:
    path = Path(path)
    if path.name in ("qat", "calibration", "export", "export_float"):
        return path.parent
    raise StereokitError(f"{path}: give a run's qat or export directory (e.g. runs/sf/qat).")


def input_quantization(model: onnx.ModelProto) -> dict[str, dict[str, float]]:
    """The scale and zero point of the QuantizeLinear each graph input enters first."""
    g = Graph.load(model)
    result = {}
    for value in model.graph.input:
        for user in g.consumers.get(value.name, []):
            if user.op_type == "QuantizeLinear":
                scale = g.constant_value(user.input[1])
                zero = g.constant_value(user.input[2]) if len(user.input) > 2 and user.input[2] else None
                result[value.name] = {"scale": float(scale.reshape(-1)[0]) if scale is not None else float("nan"),
                                      "zero_point": int(zero.reshape(-1)[0]) if zero is not None else 0}
    return result


def _export_size(record: StageRecord) -> tuple[int, int] | None:
    shape = record.details.get("inputs", {}).get("imgl")
    return (shape[2], shape[3]) if isinstance(shape, list) and len(shape) == 4 else None


def _ensure_export(run_dir: Path, source: str, size: tuple[int, int] | None) -> str | None:
    """RUN/export made from `source`'s checkpoint (at `size`, when given): reused when it is finished
    and matches, otherwise (re-)exported, the old one moved aside. Returns a note when it exported."""
    st = Lineage(run_dir).state("export")
    wanted = str(source_checkpoint(run_dir, source).relative_to(run_dir))
    finished = st.record if st.state == "finished" and st.record is not None and st.record.inputs else None
    same_source = finished is not None and finished.inputs[0].path == wanted
    had = _export_size(finished) if finished is not None and same_source else None
    if same_source and (size is None or had == size):
        return None
    if st.state == "missing":
        why = "no export yet"
    elif same_source:
        why = f"the export there is {had[1]}x{had[0]}" if had else "the export there has no recorded size"
    elif finished is not None:
        why = f"the export there came from {finished.inputs[0].path}"
    else:
        why = f"the export there is {st.state}"
    height, width = size if size is not None else (None, None)
    run_export(run_dir / source, force=True, height=height, width=width)
    return f"exported {source} first ({why})"


RUNTIMES = ("ort", "openvino", "tensorrt")


def installed_runtimes() -> list[str]:
    return ["ort"] + (["openvino"] if openvino_runtime.available() else [])


# Another runtime replaces ONNX Runtime in RUN/compile only when it is this much faster here: single
# timings on a shared machine move by ~10%.
MARGIN = 0.9
ACCURACY_PIXELS = 2_000_000  # a faster runtime is judged on seeded generated scenes (never test pairs) of this many pixels in all


def fastest_runtime(timings: dict[str, float]) -> str:
    best = min(timings, key=timings.__getitem__)
    return best if best == "ort" or timings[best] < MARGIN * timings["ort"] else "ort"


@dataclass
class RuntimeAccuracy:
    epe: dict[str, float]  # px, against the scenes' ground truth where both views see the surface
    disagreement_px: dict[str, float]  # mean |disparity difference| from ONNX Runtime's
    scenes: int = 0


def choose_runtime(timings: dict[str, float], accuracy: RuntimeAccuracy) -> tuple[str, str | None]:
    """The fastest runtime whose EPE on the generated scenes is at most EPE_REL_BAR above ONNX Runtime's
    (the bar validate-bpu holds it to); with the reason when a faster one was passed over."""
    fastest, epe = fastest_runtime(timings), accuracy.epe
    if fastest == "ort" or epe[fastest] <= (1 + EPE_REL_BAR) * epe["ort"]:
        return fastest, None
    return "ort", (f"kept ONNX Runtime: {fastest} was faster ({timings[fastest]:.1f} vs {timings['ort']:.1f} ms) but its EPE "
                   f"on {accuracy.scenes} generated scenes was {epe[fastest]:.3f} px against ONNX Runtime's {epe['ort']:.3f}, "
                   f"over the {EPE_REL_BAR:.1%} bar validate-bpu holds it to")


def accuracy_scenes(height: int, width: int) -> int:
    """Enough scenes that rounding noise averages out: ACCURACY_PIXELS in all, 8 to 64 of them."""
    return min(64, max(8, math.ceil(ACCURACY_PIXELS / (height * width))))


def runtime_accuracy(models: dict[str, bytes], names: list[str], data: DataConfig, maxdisp: float, height: int, width: int,
                     scenes: int | None = None, show_progress: bool = False) -> RuntimeAccuracy:
    """Each runtime's EPE over seeded generated scenes at the deploy size, ONNX Runtime's among them: a
    runtime that rounds its own way differs from it pixel by pixel (single flips that the network
    spreads, of either sign), and what matters is whether it is less accurate."""
    scenes = accuracy_scenes(height, width) if scenes is None else scenes
    runners = {name: open_runtime_model(name, models[name], f"<{name} model>", maxdisp) for name in ["ort", *names]}
    error, diff, pixels = dict.fromkeys(runners, 0.0), dict.fromkeys(names, 0.0), 0
    # a scene takes ~3 s to render at 960x544 and ~15 s at 2272x1536: a bar, as every long loop has
    with progress_bar(f"judging {', '.join(names)} beside ort", scenes, enabled=show_progress) as advance:
        for seed in range(scenes):
            scene = render_scene(np.random.default_rng(seed), height, width, min(maxdisp, width / 4))
            left, right = (preprocess_image(image, data).numpy() for image in (scene.left, scene.right))
            out = {name: np.asarray(run(left, right)).reshape(height, width) for name, run in runners.items()}
            pixels += int(scene.nonoccluded.sum())
            for name in runners:
                error[name] += float(np.abs(out[name] - scene.disp)[scene.nonoccluded].sum())
            for name in names:
                diff[name] += float(np.abs(out[name] - out["ort"]).mean()) / scenes
            advance()
    return RuntimeAccuracy({name: e / max(pixels, 1) for name, e in error.items()}, diff, scenes)


def runtime_latency_ms(runtime: str, model: bytes, height: int, width: int, runs: int) -> float:
    if runtime == "openvino":
        return openvino_runtime.measure_latency_ms(model, height, width, runs=runs)
    return measure_latency_ms(model, height, width, runs=runs)


def check_runtime(runtime: str | None) -> tuple[str | None, str]:
    """(runtime, the stage it writes): plain compile (None: the fastest installed, chosen by timing) writes RUN/compile."""
    if runtime is None:
        return None, "compile"
    if runtime not in RUNTIMES:
        raise StereokitError(f"--runtime {runtime!r}: not a runtime stereokit compiles for; known: {', '.join(RUNTIMES)}.")
    if runtime not in installed_runtimes():
        how = {"openvino": "pip install openvino", "tensorrt": "the tensorrt package and an NVIDIA GPU (not supported yet)"}[runtime]
        raise StereokitError(f"--runtime {runtime}: not installed on this machine (installed: {', '.join(installed_runtimes())}); "
                             f"it needs {how}.")
    return runtime, f"compile-{runtime}"


@dataclass
class RuntimePick:
    """Which runtime the container carries, and what the choice rested on."""

    name: str
    model: bytes
    timings: dict[str, float]
    accuracy: RuntimeAccuracy
    float_nodes: list[dict[str, str]]
    note: str | None


def _checked_ir(ir: onnx.ModelProto, ir_path: Path, profile: TargetProfile, islands: list[str], strict: bool) -> CheckReport:
    """The target's check of the IR; an error (or, with --strict, a CPU fallback) refuses the compile."""
    report = check_model(ir, profile, islands)
    if report.errors:
        raise StereokitError(f"{ir_path}: cannot compile: {report.errors[0]} (run 'stereokit check' for all).", exit_code=1)
    if strict and report.fallbacks:
        first = report.fallbacks[0]
        raise StereokitError(f"{ir_path}: {len(report.fallbacks)} node(s) would fall back to the CPU on {profile.name} (--strict); "
                             f"first: {first.name} ({first.op}, {first.rule}).", exit_code=1)
    return report


def _pick_runtime(runtime: str | None, ir_bytes: bytes, lowered: bytes, compiled_nodes: list[CompiledNode], ir_path: Path, data: DataConfig,
                  maxdisp: float, size: tuple[int, int], measure_runs: int, strict: bool, note: str | None,
                  show_progress: bool) -> RuntimePick:
    """--runtime's, or (plain compile) the fastest installed one that is as accurate as ONNX Runtime's
    graph and runs in integer what check puts on the integer path."""
    h, w = size
    candidates = installed_runtimes() if runtime is None else [runtime]
    models = {name: lowered if name == "ort" else openvino_runtime.convert_ir(ir_bytes) for name in candidates}
    timings = {name: runtime_latency_ms(name, models[name], h, w, measure_runs) for name in candidates}
    accuracy = RuntimeAccuracy({}, {})  # plain compile: the faster runtime's beside ONNX Runtime's
    if runtime is None:
        if (fastest := fastest_runtime(timings)) != "ort":
            accuracy = runtime_accuracy(models, [fastest], data, maxdisp, h, w, show_progress=show_progress)
        chosen, passed_over = choose_runtime(timings, accuracy)
        note = "; ".join(filter(None, [note, passed_over])) or None
    else:
        chosen = runtime
    runtime_float = openvino_float_nodes(models[chosen], compiled_nodes, str(ir_path)) if chosen == "openvino" else []
    if runtime is None and runtime_float:
        # plain compile keeps to a runtime that runs what check puts on the integer path in integer
        note = "; ".join(filter(None, [note, f"kept ONNX Runtime: OpenVINO was faster but runs {len(runtime_float)} integer node(s) in float"]))
        chosen, runtime_float = "ort", []
    if strict and runtime_float:
        raise StereokitError(f"{ir_path}: OpenVINO runs {len(runtime_float)} node(s) in float that check puts on the integer path "
                             f"(--strict); first: {runtime_float[0]['node']} ({runtime_float[0]['precision']}).", exit_code=1)
    return RuntimePick(chosen, models[chosen], timings, accuracy, runtime_float, note)


def _manifest(ir: onnx.ModelProto, meta: dict[str, str], profile_name: str, size: tuple[int, int], sources: dict[str, str],
              counts: dict[str, int], islands: list[str], compiled_nodes: list[CompiledNode], lowered: bytes, totals: dict,
              pick: RuntimePick) -> dict:
    """What the container says about itself. Only what follows from the IR goes in, so the same IR gives
    the same bytes; measured timings go to perf.json and the stage record."""
    h, w = size
    return {
        "format_version": FORMAT_VERSION,
        "stereokit_version": __version__,
        "target": profile_name,
        "inputs": {name: [1, 3, h, w] for name in ("imgl", "imgr")},
        "output": {"disparity": [1, 1, h, w]},
        "preprocessing": metadata(ir),
        "input_quantization": input_quantization(ir),
        "maxdisp": float(meta["maxdisp"]),
        "source_stage": meta["source_stage"],
        "source_sha256": meta.get("source_sha256", ""),
        "sources": sources,
        "op_counts": counts,
        "float_islands": islands,
        # ONNX Runtime's QLinear ops are 8-bit only: these run as DQ -> op -> Q in float on int16 values
        "int16_simulated": [n.name for n in compiled_nodes if n.runs == "int16-simulation"],
        # and ONNX Runtime's CPU provider has no integer bilinear Resize: these run as DQ -> Resize -> Q
        "resize_simulated": [n.name for n in compiled_nodes if n.runs == "resize-simulation"],
        "q_dq_q_chains": chains_left(lowered),
        "estimate": totals,
        "runtime": pick.name,
        **({"runtime_version": openvino_runtime.version(), "runtime_float_nodes": pick.float_nodes} if pick.name == "openvino" else {}),
    }


def run_compile(path: Path, target: str = "bpu-sim", strict: bool = False, force: bool = False,
                measure_runs: int = 3, runtime: str | None = None,
                height: int | None = None, width: int | None = None, show_progress: bool = True) -> CompileResult:
    """`height`/`width` (from RUN/qat or RUN/calibration only): export at that input size first;
    otherwise the model takes the size of the export it compiles (default deploy.input_*)."""
    path = Path(path)
    runtime, stage = check_runtime(runtime)
    run_dir = _run_dir_of(path)
    cfg = run_config(run_dir)
    size = None if height is None and width is None else deploy_size(cfg.deploy, height, width)
    if size is not None and path.name not in ("qat", "calibration"):
        raise StereokitError(f"{path}: an export's input size is fixed; give --height/--width to 'stereokit export' "
                             "or compile RUN/qat with them.")
    profile = load_target(target)
    check_rerun(run_dir, stage, force, what="a compiled model")
    if path.name in ("qat", "calibration"):
        require_stage(run_dir, path.name)
        note = _ensure_export(run_dir, path.name, size)
        ir_stage = "export"
    else:
        note, ir_stage = None, path.name
    export_record = require_stage(run_dir, ir_stage)
    float_record = require_stage(run_dir, "float")  # the float model is timed beside the compiled one
    ir_path = stage_dir(run_dir, ir_stage) / "model.onnx"
    ir = load_ir(ir_path)
    islands = islands_for(ir, str(ir_path))
    meta = ir_metadata(ir, str(ir_path))
    report = _checked_ir(ir, ir_path, profile, islands, strict)
    ir_bytes = ir_path.read_bytes()
    lowered = lower_to_integer(ir_bytes)
    compiled_nodes = confirm_check(report, lowered)
    h, w = input_size(ir, str(ir_path))
    pick = _pick_runtime(runtime, ir_bytes, lowered, compiled_nodes, ir_path, cfg.data, float(meta["maxdisp"]), (h, w), measure_runs,
                         strict, note, show_progress)
    ir_art = recorded_artifact(run_dir, export_record, ir_path)
    rows = estimate(ir, report, profile)
    totals = summary(rows, profile)
    float_onnx = export_onnx(DeployModel(float_model(cfg, stage_dir(run_dir, "float") / "best.pt")), h, w, cfg.deploy.opset, {})
    counts = op_counts(lowered)
    sources = {"ir_sha256": ir_art.sha256, **{f"{a.path}": a.sha256 for a in export_record.inputs}}
    manifest = _manifest(ir, meta, profile.name, (h, w), sources, counts, islands, compiled_nodes, lowered, totals, pick)
    container = pack_hbm(manifest, pick.model)
    measured = {"compiled_int8_ms": pick.timings[pick.name], "onnx_float_ms": measure_latency_ms(float_onnx, h, w, runs=measure_runs)}
    accuracy = pick.accuracy
    choice = {"runtime_ms": pick.timings, "runtime_epe_px": accuracy.epe, "runtime_disagreement_px": accuracy.disagreement_px,
              "runtime_epe_scenes": accuracy.scenes,
              "rule": f"the fastest, when under {MARGIN:g}x ONNX Runtime's time and its EPE on generated scenes "
                      f"({ACCURACY_PIXELS:,} pixels) at most {EPE_REL_BAR:.1%} above ONNX Runtime's"} if runtime is None else {}
    moved = clear_for_rerun(run_dir, stage, force, what="a compiled model")
    out = stage_dir(run_dir, stage)
    float_art = next((a for a in float_record.outputs if a.path == "float/best.pt"), None)
    record = StageRecord(stage=stage, config_hash=stage_config_hash(cfg, stage), inputs=[ir_art] + export_record.inputs)
    if float_art is not None and float_art not in record.inputs:
        record.details["float_timed"] = float_art.model_dump()
    hbm = out / "model.hbm"
    with stage_lock(run_dir, stage):
        write_stage_record(run_dir, record)
        atomic_write_bytes(hbm, container)
        perf = {"target": profile.model_dump(), "runtime": pick.name, **choice, "totals": totals, "measured_cpu_latency_ms": measured,
                "layers": rows_json(rows), "nodes": [asdict(n) for n in compiled_nodes], "runtime_float_nodes": pick.float_nodes}
        atomic_write_text(out / "perf.json", json.dumps(perf, indent=2))
        atomic_write_text(out / "perf.html", perf_html(f"stereokit compile: {run_dir} on {profile.name}", totals, measured, rows))
        share = report.accelerator_macs / report.macs if report.macs else 0.0
        record.details.update({"target": profile.name, "op_counts": counts, "fallbacks": len(report.fallbacks),
                               "source_stage": meta["source_stage"], "runtime": pick.name, **choice})
        finish_stage(run_dir, record, [hbm, out / "perf.json", out / "perf.html"],
                     {"accelerator_share": share, **totals, "latency_ms": measured})
    return CompileResult(hbm=hbm, runtime=pick.name, runtime_ms=pick.timings if runtime is None else {}, runtime_epe=accuracy.epe,
                         runtime_epe_scenes=accuracy.scenes, runtime_float_nodes=pick.float_nodes, bytes=hbm.stat().st_size,
                         target=profile.name, op_counts=counts, accelerator_share=share, fallbacks=len(report.fallbacks),
                         estimated_latency_ms=totals["estimated_latency_ms"], estimated_fps=totals["estimated_fps"], latency_ms=measured,
                         perf_json=out / "perf.json", perf_html=out / "perf.html", source_stage=meta["source_stage"], note=pick.note,
                         moved_aside=moved)
