"""What 16 bits buy: the same float model quantized with the reference's precision map and with all 8 bits.

Run by hand after `stereokit demo` (it reuses that run's float weights and data):
    python benchmarks/bench_precision.py --demo runs/demo
For each map it copies the demo's run, sets quant.int16_modules, re-records the float stage under the
new config (the float weights do not depend on quantization settings), then runs calibrate, qat,
eval (qat, int_infer), export, compile and validate-bpu. Prints one Markdown table: EPE of each stage
on the test split, the disparity output's type and step in px, and the compiled model's latency here.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from stereokit.config import config_hash, config_to_yaml
from stereokit.errors import StereokitError
from stereokit.runs import atomic_write_text, read_manifest, read_stage_record, run_config, write_manifest, write_stage_record
from stereokit.services.calibrate import run_calibrate
from stereokit.services.compile import run_compile
from stereokit.services.eval import run_eval
from stereokit.services.export import run_export
from stereokit.services.qat import run_qat
from stereokit.services.validate_bpu import run_validate

MAPS = {"reference (int16 softmax, regression, refinement outputs)": None, "all 8-bit": []}


def rebase(run: Path, int16_modules: list[str] | None) -> None:
    """Keep only the float stage and record it under the config with this precision map."""
    cfg = run_config(run)
    if int16_modules is not None:
        cfg = cfg.model_copy(update={"quant": cfg.quant.model_copy(update={"int16_modules": int16_modules})})
    for stage in [p for p in run.iterdir() if p.is_dir() and p.name != "float"]:
        shutil.rmtree(stage)
    atomic_write_text(run / "config.yaml", config_to_yaml(cfg))
    record = read_stage_record(run, "float")
    record.config_hash = config_hash(cfg)
    manifest = read_manifest(run)
    manifest.config_hash = record.config_hash
    manifest.stages = {"float": "finished"}
    write_manifest(run, manifest)
    write_stage_record(run, record)


def measure(run: Path) -> dict[str, object]:
    run_calibrate(run, force=True, show_progress=False)
    run_qat(run, force=True, show_progress=False)
    qat = run_eval(run, "qat", show_progress=False)
    int_infer = run_eval(run, "int_infer", show_progress=False)
    exported = run_export(run / "qat", force=True)
    row = {"qat": qat.epe, "int_infer": int_infer.epe, "dtype": exported.output_dtype, "step": exported.output_step_px}
    try:
        # ONNX Runtime's graph for both maps: the one that reproduces int_infer's rounding
        compiled = run_compile(run / "export", force=True, measure_runs=5, runtime="ort")
    except StereokitError as err:  # compile refusing is a result too: say why
        return {**row, "refused": str(err)}
    validated = run_validate(run / "compile-ort", show_progress=False)
    return {**row, "compiled": validated.epe, "agreement": validated.mean_abs_diff_px, "ms": compiled.latency_ms["compiled_int8_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()
    source = args.demo / "run"
    float_epe = run_eval(source, "float", show_progress=False).epe
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, modules in MAPS.items():
            run = Path(shutil.copytree(source, Path(tmp) / name.split()[0]))
            rebase(run, modules)
            rows[name] = measure(run)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"demo run {source}, float EPE {float_epe:.4f} px on the test split")
    print("| precision map | QAT EPE | int_infer EPE | compiled EPE | compiled vs int_infer (mean px) | output | step (px) | compiled ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if "refused" in r:
            print(f"| {name} | {r['qat']:.4f} | {r['int_infer']:.4f} | compile refused | - | {r['dtype']} | {r['step']:.4f} | - |")
            print(f"\n{name}: {r['refused']}\n")
            continue
        print(f"| {name} | {r['qat']:.4f} | {r['int_infer']:.4f} | {r['compiled']:.4f} | {r['agreement']:.4f} | "
              f"{r['dtype']} | {r['step']:.4f} | {r['ms']:.0f} |")


if __name__ == "__main__":
    main()
