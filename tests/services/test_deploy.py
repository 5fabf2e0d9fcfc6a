from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from stereokit.config import load_config
from stereokit.data.pfm import read_pfm
from stereokit.data.sceneflow import read_split
from stereokit.data.dataset import build_dataloader
from stereokit.deploy.checker import check_model
from stereokit.deploy.compiler import confirm_check, lower_to_integer
from stereokit.deploy.hbm import load_hbm, pack_hbm, unpack_hbm
from stereokit.deploy.target import load_target
from stereokit.engine.evaluate import evaluate
from stereokit.errors import StageError, StereokitError
from stereokit.lineage import require_stage
from stereokit.services.check import run_check
from stereokit.services.compile import run_compile
from stereokit.services.eval import run_eval
from stereokit.services.export import run_export
from stereokit.services.infer import run_infer
from stereokit.runs import run_config
from stereokit.services.stages import load_stage_model
from stereokit.services.status import run_status
from stereokit.services.train import run_train_float
from stereokit.services.validate_bpu import run_validate
from tests.cli import STEREOKIT, assert_all_refused
from tests.conftest import tiny_overrides, train_through_qat

DEPLOY = ["deploy.input_height=64", "deploy.input_width=128", "train.calibration.steps=4", "train.calibration.batch_size=4",
          "train.qat.batch_size=4", "train.qat.epochs=1", "train.qat.lr=1e-4"]


@pytest.fixture(scope="module")
def deployed(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("deploy") / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, epochs=4) + DEPLOY)
    train_through_qat(cfg, run)
    run_export(run / "float")
    run_compile(run / "qat", measure_runs=1)  # exports the QAT model first; the fastest runtime installed
    run_compile(run / "qat", measure_runs=1, runtime="ort")  # ONNX Runtime's QLinear graph, for the tests that read it
    return run


def test_export_is_a_checked_static_qdq_graph(deployed: Path) -> None:
    model = onnx.load(str(deployed / "export" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["imgl", "imgr"] and [o.name for o in model.graph.output] == ["disparity"]
    for value in list(model.graph.input) + list(model.graph.output):
        assert [d.dim_value for d in value.type.tensor_type.shape.dim][2:] == [64, 128]
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "BatchNormalization" not in ops
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21  # int16 Q/DQ
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["int16_modules"])[0] == "head.soft_argmin"
    assert props["input_layout"] == "NCHW" and props["input_normalisation"] == "(x - 128) / 128"
    assert props["source_stage"] == "qat" and props["maxdisp"] == "32"
    record = require_stage(deployed, "export")
    assert record.inputs[0].path == "qat/best.pt" and record.details["inputs"]["imgl"] == [1, 3, 64, 128]
    assert record.details["output_dtype"] == "int16" and record.details["output_step_px"] < 32 / 32767 * 1.5
    float_ops = {n.op_type for n in onnx.load(str(deployed / "export_float" / "model.onnx")).graph.node}
    assert "QuantizeLinear" not in float_ops


def test_check_puts_every_conv_on_the_accelerator(deployed: Path, tmp_path: Path) -> None:
    report = run_check(deployed / "export")
    assert report.errors == []
    convs = [n for n in report.nodes if n.op == "Conv"]
    assert convs and all(n.device == "accelerator" for n in convs)
    int16 = {n.name for n in report.nodes if n.dtype == "int16"}
    assert any("soft_argmin/regression" in n for n in int16) and any("refine.0/residual" in n for n in int16)
    assert not any("/blocks/" in n for n in int16)  # the refinement features stay 8-bit
    assert report.dtypes["int16"] == len(int16) and report.dtypes["uint8"] > 40
    assert report.accelerator_share == 1.0
    assert all(n.rule for n in report.nodes)
    strict_target = json.loads((Path(__file__).parents[2] / "stereokit/deploy/targets/bpu-sim.json").read_text())
    strict_target["name"] = "tiny-npu"
    strict_target["ops"][0]["max_kernel"] = 1
    (tmp_path / "tiny.json").write_text(json.dumps(strict_target))
    small = run_check(deployed / "export", str(tmp_path / "tiny.json"))
    assert any(n.rule == "kernel 3x3 above 1" and n.device == "cpu" for n in small.nodes)
    assert small.accelerator_share < report.accelerator_share
    float_report = run_check(deployed / "export_float")
    assert float_report.fallbacks == len(float_report.nodes) and float_report.accelerator_share == 0.0


def test_a_target_without_int16_names_every_int16_node(deployed: Path, tmp_path: Path) -> None:
    profile = json.loads((Path(__file__).parents[2] / "stereokit/deploy/targets/bpu-sim.json").read_text())
    profile.update(name="npu8", activation_dtypes=["uint8", "int8"])
    (tmp_path / "npu8.json").write_text(json.dumps(profile))
    int16 = [n.name for n in run_check(deployed / "export").nodes if n.dtype == "int16"]
    result = subprocess.run([STEREOKIT, "check", str(deployed / "export"), "--target", str(tmp_path / "npu8.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in int16:
        assert f"{name} (" in result.stdout.replace("\n", "")  # named, one line each
    report = run_check(deployed / "export", str(tmp_path / "npu8.json"))
    quantized_on_cpu = [n for n in report.nodes if n.device == "cpu" and n.dtype != "float"]
    assert {n.name for n in quantized_on_cpu} == set(int16)
    assert all("int16 activations" in n.rule for n in quantized_on_cpu)
    as_json = subprocess.run([STEREOKIT, "check", str(deployed / "export"), "--target", str(tmp_path / "npu8.json"), "--json"],
                             capture_output=True, text=True, timeout=300)
    assert {n["name"]: n["dtype"] for n in json.loads(as_json.stdout)["nodes"]}[int16[0]] == "int16"
    run = _copy_run(deployed, tmp_path)
    first_fallback = next(n for n in report.nodes if n.device == "cpu")
    with pytest.raises(StereokitError, match=re.escape(f"first: {first_fallback.name} (")):
        run_compile(run / "export", str(tmp_path / "npu8.json"), strict=True, force=True, measure_runs=1)


def test_compile_fails_where_the_compiled_graph_contradicts_check(deployed: Path) -> None:
    """An 8-bit node check put on the accelerator but left in float by the lowering is refused by name."""
    ir = onnx.load(str(deployed / "export" / "model.onnx"))
    report = check_model(ir, load_target("bpu-sim"), [])
    lowered = onnx.load_from_string(lower_to_integer((deployed / "export" / "model.onnx").read_bytes()))
    rows = confirm_check(report, lowered.SerializeToString())
    assert {r.runs for r in rows if r.predicted == "accelerator"} <= {"integer", "int16-simulation", "fused"}
    assert {r.op for r in rows if r.predicted == "cpu"} <= {"Mul", "Clip", "Slice"}  # the post-process, after the last DQ
    assert all(r.runs == "int16-simulation" for r in rows if r.dtype == "int16" and r.compiled == "Conv")
    # undo one QLinearConv into DQ -> Conv (float), as a lowering that missed it would leave it
    victim = next(n for n in lowered.graph.node if n.op_type == "QLinearConv")
    x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero = victim.input[:8]
    dq_x = onnx.helper.make_node("DequantizeLinear", [x, x_scale, x_zero], [victim.name + "_x"], name=victim.name + "_dqx")
    dq_w = onnx.helper.make_node("DequantizeLinear", [w, w_scale, w_zero], [victim.name + "_w"], name=victim.name + "_dqw", axis=0)
    conv = onnx.helper.make_node("Conv", [victim.name + "_x", victim.name + "_w"], [victim.name + "_y"], name=victim.name)
    q = onnx.helper.make_node("QuantizeLinear", [victim.name + "_y", y_scale, y_zero], list(victim.output), name=victim.name + "_q")
    nodes = [n for n in lowered.graph.node if n is not victim]
    del lowered.graph.node[:]
    lowered.graph.node.extend([dq_x, dq_w, conv, q] + nodes)
    with pytest.raises(StereokitError, match=re.escape(f"{victim.name}: check put this Conv on the accelerator at uint8, but the compiled graph runs it in float")):
        confirm_check(report, lowered.SerializeToString())


def test_compiled_model_is_integer_and_self_contained(deployed: Path) -> None:
    compiled = load_hbm(deployed / "compile-ort" / "model.hbm")
    graph = onnx.load_from_string(compiled.model)
    ops = [n.op_type for n in graph.graph.node]
    float_convs = {n.name for n in graph.graph.node if n.op_type == "Conv"}
    manifest = compiled.manifest
    assert float_convs and float_convs <= set(manifest["int16_simulated"])  # DQ -> Conv -> Q on int16 values, named
    assert ops.count("QLinearConv") >= 35 and "QLinearAdd" in ops
    assert manifest["inputs"]["imgl"] == [1, 3, 64, 128] and manifest["target"] == "bpu-sim"
    assert manifest["input_quantization"]["imgl"]["scale"] > 0
    assert manifest["q_dq_q_chains"] == 0
    assert manifest["sources"]["qat/best.pt"] == require_stage(deployed, "export").inputs[0].sha256
    perf = json.loads((deployed / "compile-ort" / "perf.json").read_text())
    assert perf["totals"]["macs"] > 0 and perf["totals"]["estimated_latency_ms"] > 0
    assert {"compiled_int8_ms", "onnx_float_ms"} <= set(perf["measured_cpu_latency_ms"])
    assert all(layer["bound"] in ("compute", "bandwidth") for layer in perf["layers"])
    nodes = {n["name"]: n for n in perf["nodes"]}
    assert all({"predicted", "compiled", "dtype", "runs"} <= set(n) for n in nodes.values())
    assert {n["runs"] for n in nodes.values() if n["predicted"] == "accelerator"} <= {"integer", "int16-simulation", "fused"}
    assert "<table>" in (deployed / "compile-ort" / "perf.html").read_text()


def test_hbm_loader_refuses_damage() -> None:
    good = pack_hbm({"a": 1}, b"model-bytes")
    assert unpack_hbm(good).model == b"model-bytes"
    with pytest.raises(StereokitError, match="truncated"):
        unpack_hbm(good[:-1])
    flipped = bytearray(good)
    flipped[-3] ^= 0x01
    with pytest.raises(StereokitError, match="checksum does not match"):
        unpack_hbm(bytes(flipped))
    with pytest.raises(StereokitError, match="bad magic"):
        unpack_hbm(b"XXXXXXXX" + good[8:])
    newer = good[:8] + struct.pack("<I", 99) + good[12:]
    with pytest.raises(StereokitError, match="newer than this stereokit reads"):
        unpack_hbm(newer)
    with pytest.raises(StereokitError, match="too short"):
        unpack_hbm(b"SKHBM")


def test_validate_bpu_agrees_with_int_infer(deployed: Path) -> None:
    result = run_validate(deployed / "compile-ort", show_progress=False)
    int_infer = run_eval(deployed, "int_infer", show_progress=False)
    assert result.passed and result.images == 3
    assert result.provider == "cpu"  # no GPU here: auto falls back to the CPU provider, and says so
    recorded = json.loads((deployed / "compile-ort" / "validate.json").read_text())
    assert recorded["provider"] == "cpu" and recorded["runtime"] == f"onnxruntime {onnxruntime.__version__}"
    # what ran where, from ONNX Runtime's own profile: every integer op on the CPU provider
    assert set(result.placement) == {"cpu"} and result.placement["cpu"]["QLinearConv"] > 0
    assert abs(result.epe - int_infer.epe) <= 0.02 * int_infer.epe
    assert result.int_infer_epe == pytest.approx(int_infer.epe, rel=1e-6)
    assert result.int_infer_epe_own_size is None and result.compiled_size == (64, 128)  # nothing padded
    # int_infer adds its conv biases on the int32 grid as QLinearConv does: 0.0001 px here (0.0013
    # with torch's float bias)
    assert result.mean_abs_diff_px < 0.0005


def test_infer_any_size_writes_every_output_right_way_up(deployed: Path, tiny_data: Path, tmp_path: Path) -> None:
    sample = read_split(tiny_data / "SceneFlow", "test")[0][0]
    left = cv2.imread(str(tiny_data / "SceneFlow" / sample.left))
    right = cv2.imread(str(tiny_data / "SceneFlow" / sample.right))
    for name, size in (("small", (100, 50)), ("large", (300, 130))):
        cv2.imwrite(str(tmp_path / f"{name}_l.png"), cv2.resize(left, size))
        cv2.imwrite(str(tmp_path / f"{name}_r.png"), cv2.resize(right, size))
        for model in (deployed / "compile" / "model.hbm", deployed / "export" / "model.onnx", deployed / "qat"):
            out = tmp_path / f"{name}_{model.name}"
            result = run_infer(model, tmp_path / f"{name}_l.png", tmp_path / f"{name}_r.png", out, 0.54, 1050.0, scale=1.0)
            assert result.size == [size[1], size[0]]
            fixed_shape = model.name != "qat"  # the .hbm and the .onnx have the static 64x128 input
            expected = ("padded" if name == "small" else "resized") if fixed_shape else "torch"
            assert expected in result.handling, result.handling
            for key in ("disparity_pfm", "disparity_png16", "disparity_color", "depth_pfm", "depth_mm_png", "depth_png", "cloud_ply", "side_by_side"):
                assert Path(result.outputs[key]).is_file(), key
            disp = read_pfm(out / "disparity.pfm")
            png16 = cv2.imread(str(out / "disparity.png"), cv2.IMREAD_UNCHANGED)
            assert disp.shape == (size[1], size[0]) and png16.dtype == np.uint16
            assert np.allclose(png16 / 256.0, np.clip(disp, 0, 255.99), atol=1 / 256)  # same orientation
            depth = read_pfm(out / "depth.pfm")
            ok = disp > 0
            assert np.allclose(depth[ok], 1050.0 * 0.54 / disp[ok], rtol=1e-5)
            panel = cv2.imread(str(out / "side_by_side.png"))
            assert np.array_equal(panel[:, : size[0]], cv2.imread(str(tmp_path / f"{name}_l.png")))
    # auto scale never takes a fixed-shape model's pair past its input: upscaled into 128x64, not beyond
    auto = run_infer(deployed / "compile" / "model.hbm", tmp_path / "small_l.png", tmp_path / "small_r.png", tmp_path / "auto")
    assert "auto scale" in auto.handling and auto.size == [50, 100], auto.handling
    assert "resized 100x50 to 128x64" in auto.handling or "padded 100x50" in auto.handling, auto.handling


def test_bad_inputs_to_deployment_commands(deployed: Path, tmp_path: Path) -> None:
    left = tmp_path / "l.png"
    cv2.imwrite(str(left), np.zeros((40, 60, 3), np.uint8))
    (tmp_path / "text.png").write_text("not an image")
    cv2.imwrite(str(tmp_path / "other.png"), np.zeros((41, 60, 3), np.uint8))
    hbm = deployed / "compile" / "model.hbm"
    data = hbm.read_bytes()
    (tmp_path / "newer.hbm").write_bytes(data[:8] + struct.pack("<I", 7) + data[12:])
    cases = [
        (["infer", "--model", str(hbm), "--imgl", str(tmp_path / "text.png"), "--imgr", str(left)], "text.png: not a readable image"),
        (["infer", "--model", str(hbm), "--imgl", str(left), "--imgr", str(tmp_path / "other.png")], "differs from the left image"),
        (["infer", "--model", str(hbm), "--imgl", str(left), "--imgr", str(left), "--baseline", "0.5"], "--f: depth needs both"),
        (["infer", "--model", str(tmp_path / "newer.hbm"), "--imgl", str(left), "--imgr", str(left)], "newer than this stereokit reads"),
        (["compile", str(deployed / "export_float"), "--strict", "--force"], "fall back to the CPU"),
        (["check", str(deployed / "export_float"), "--strict"], "fall back to the CPU (--strict)"),
        (["check", str(tmp_path)], "no model.onnx here"),
        (["compile", str(deployed / "qat")], "a compiled model is already here (finished); pass --force"),
        (["export", str(deployed / "qat")], "an export is already here (finished); pass --force"),
        (["export", str(deployed / "qat"), "--force", "--height", "100"], "--height/--width: input size 100x128 must be a multiple of 32"),
        (["compile", str(deployed / "export"), "--force", "--height", "96", "--width", "160"], "an export's input size is fixed"),
        (["compile", str(deployed / "qat"), "--force", "--width", "0"], "input size 64x0 must be positive"),
        (["validate-bpu", str(tmp_path / "nothing" / "compile")], "no compile stage here; run 'stereokit compile"),
        (["validate-bpu", str(deployed / "compile-ort"), "--provider", "tensorrt"], "'tensorrt' is not installed in this ONNX Runtime; installed: "),
        (["infer", "--model", str(deployed / "compile-ort" / "model.hbm"), "--imgl", str(left), "--imgr", str(left), "--provider", "bogus", "--save-path", str(tmp_path / "o")],
         "'bogus' is not installed"),
    ]
    assert_all_refused(deployed, cases)


def _copy_run(deployed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(deployed, tmp_path / "run"))


def _hashes(root: Path) -> set[str]:
    """Every artifact's content (run.json, the stage index, is rewritten by design)."""
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file() and p.name != "run.json"}


def test_a_copied_onnx_checks_identically(deployed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "ir.onnx"
    copy.parent.mkdir()
    shutil.copy(deployed / "export" / "model.onnx", copy)
    inside, outside = run_check(deployed / "export"), run_check(copy)
    assert [(n.name, n.device, n.rule, n.dtype) for n in inside.nodes] == [(n.name, n.device, n.rule, n.dtype) for n in outside.nodes]
    assert any(n.dtype == "int16" for n in outside.nodes)


def test_an_onnx_or_hbm_without_what_stereokit_writes_is_refused(deployed: Path, tmp_path: Path) -> None:
    model = onnx.load(str(deployed / "export" / "model.onnx"))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    left = tmp_path / "l.png"
    cv2.imwrite(str(left), np.zeros((64, 128, 3), np.uint8))
    with pytest.raises(StereokitError, match="not a stereokit IR"):
        run_check(bare)
    with pytest.raises(StereokitError, match="lacks mean, std, rgb_input"):
        run_infer(bare, left, left, tmp_path / "out")
    renamed = onnx.load(str(deployed / "export" / "model.onnx"))
    for node in renamed.graph.node:
        node.input[:] = ["x" if i == "imgl" else i for i in node.input]
    renamed.graph.input[0].name = "x"
    (tmp_path / "renamed.onnx").write_bytes(renamed.SerializeToString())
    with pytest.raises(StereokitError, match="inputs .* are not stereokit's"):
        run_infer(tmp_path / "renamed.onnx", left, left, tmp_path / "out")
    compiled = load_hbm(deployed / "compile" / "model.hbm")
    manifest = {k: v for k, v in compiled.manifest.items() if k != "maxdisp"}
    (tmp_path / "nomax.hbm").write_bytes(pack_hbm(manifest, compiled.model))
    with pytest.raises(StereokitError, match="no valid maxdisp"):
        run_infer(tmp_path / "nomax.hbm", left, left, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_and_compile_twice_give_the_same_bytes(deployed: Path, tmp_path: Path) -> None:
    run = _copy_run(deployed, tmp_path)
    ir, hbm = (run / "export" / "model.onnx").read_bytes(), (run / "compile-ort" / "model.hbm").read_bytes()
    result = run_export(run / "qat", force=True)
    assert (run / "export" / "model.onnx").read_bytes() == ir
    assert sorted(Path(p).name.rsplit("-", 1)[0] for p in result.moved_aside) == ["compile", "compile-ort", "export"]
    run_compile(run / "qat", measure_runs=1, runtime="ort")
    assert (run / "compile-ort" / "model.hbm").read_bytes() == hbm
    assert "measured_cpu_latency_ms" not in load_hbm(run / "compile-ort" / "model.hbm").manifest


def test_status_names_validate_bpu_next_and_then_infer(deployed: Path, tmp_path: Path) -> None:
    run = _copy_run(deployed, tmp_path)
    (run / "compile" / "validate.json").unlink(missing_ok=True)  # another test may have validated the original
    assert run_status(run).next_command == f"stereokit validate-bpu {run / 'compile'}"
    run_validate(run / "compile", show_progress=False)
    status = run_status(run)
    assert status.next_command.startswith(f"stereokit infer --model {run / 'compile' / 'model.hbm'} --imgl ")
    assert {r.stage: r.epe_split for r in status.stages}["compile"] == "test"


def test_validate_bpu_compares_with_the_stage_the_ir_came_from(deployed: Path, tmp_path: Path) -> None:
    run = _copy_run(deployed, tmp_path)
    result = run_compile(run / "calibration", force=True, measure_runs=1, runtime="ort")
    assert result.source_stage == "calibration" and result.note and "came from qat/best.pt" in result.note
    assert require_stage(run, "export").inputs[0].path == "calibration/checkpoint.pt"
    validated = run_validate(run / "compile-ort", show_progress=False)
    assert validated.reference == "int_infer model from calibration/checkpoint.pt" and validated.passed
    cfg = run_config(run)
    twin = load_stage_model(cfg, "int_infer", run / "calibration" / "checkpoint.pt")
    loader = build_dataloader(cfg, "test", train=False, batch_size=1)
    expected = evaluate(twin, loader, cfg.model.maxdisp, torch.device("cpu"), False)
    assert validated.int_infer_epe == pytest.approx(expected["epe"], rel=1e-6)
    # the checkpoint it came from changes: validate-bpu refuses instead of comparing with another model
    with open(run / "calibration" / "checkpoint.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(StageError, match="compile-ort stage is stale: its parent export is stale .*calibration/checkpoint.pt: its sha256"):
        run_validate(run / "compile-ort", show_progress=False)


def test_compile_at_another_input_size_exports_there_and_runs_every_test_pair(deployed: Path, tmp_path: Path) -> None:
    run = _copy_run(deployed, tmp_path)
    result = run_compile(run / "qat", force=True, measure_runs=1, runtime="ort", height=96, width=160)
    assert result.note == "exported qat first (the export there is 128x64)"
    ir = onnx.load(str(run / "export" / "model.onnx"))
    assert [d.dim_value for d in ir.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 96, 160]
    assert {p.key: p.value for p in ir.metadata_props}["input_shape"] == "1x3x96x160"
    manifest = load_hbm(run / "compile-ort" / "model.hbm").manifest
    assert manifest["inputs"]["imgl"] == [1, 3, 96, 160] and manifest["output"]["disparity"] == [1, 1, 96, 160]
    # the 64x128 test pairs are padded into it, and int_infer is given the same padded input: only the
    # compile can part them; its own-size EPE (what padding costs) is the one eval reports
    validated = run_validate(run / "compile-ort", show_progress=False)
    assert validated.compiled_size == (96, 160) and validated.passed
    assert validated.mean_abs_diff_px < 0.0005 and validated.epe == pytest.approx(validated.int_infer_epe, rel=0.001)
    assert validated.int_infer_epe_own_size == pytest.approx(run_eval(run, "int_infer", show_progress=False).epe, rel=1e-6)
    # a plain compile afterwards reuses that export at its size, instead of going back to deploy.input_*
    again = run_compile(run / "qat", force=True, measure_runs=1, runtime="ort")
    assert again.note is None and load_hbm(run / "compile-ort" / "model.hbm").manifest["inputs"]["imgl"] == [1, 3, 96, 160]


def test_a_forced_float_moves_every_descendant_aside_and_nothing_uses_them(deployed: Path, tmp_path: Path) -> None:
    run = _copy_run(deployed, tmp_path)
    before = _hashes(run)
    result = run_train_float(run_config(run), run, force=True, show_progress=False)
    moved = sorted(Path(p).name.rsplit("-", 1)[0] for p in result.moved_aside)
    assert moved == ["calibration", "compile", "compile-ort", "export", "export_float", "float", "qat"]
    assert before <= _hashes(run)  # nothing deleted: every old file is still somewhere in the run
    refusals = [
        lambda: run_eval(run, "qat", show_progress=False),
        lambda: run_eval(run, "calibration", show_progress=False),
        lambda: run_export(run / "qat"),
        lambda: run_compile(run / "export", measure_runs=1),
        lambda: run_validate(run / "compile", show_progress=False),
    ]
    for call in refusals:
        with pytest.raises(StageError, match=r"no \w+ stage here \(the last one was moved aside to .*\.stale"):
            call()
    status = run_status(run)
    rows = {r.stage: r for r in status.stages}
    assert rows["float"].state == "finished"
    assert all(rows[s].state == "missing" and ".stale" in rows[s].why for s in ("calibration", "qat", "export", "compile"))
    assert status.next_command == f"stereokit calibrate --run-dir {run}"


def test_stale_stages_in_place_are_refused_by_every_command(deployed: Path, tmp_path: Path) -> None:
    run = _copy_run(deployed, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("seed: 0", "seed: 1"))
    left = tmp_path / "l.png"
    cv2.imwrite(str(left), np.zeros((64, 128, 3), np.uint8))
    commands = (["eval", "--stage", "qat", "--run-dir", str(run)], ["export", str(run / "qat"), "--force"],
                ["compile", str(run / "export"), "--force"], ["validate-bpu", str(run / "compile")],
                ["calibrate", "--run-dir", str(run), "--force"],
                ["infer", "--model", str(run / "qat"), "--imgl", str(left), "--imgr", str(left), "--save-path", str(tmp_path / "o")])
    # the stage itself, or (export: it does not read the seed) the parent it was made from
    assert_all_refused(run, [(args, "it was made with another config") for args in commands])
    shown = subprocess.run([STEREOKIT, "status", str(run), "--json"], capture_output=True, text=True, timeout=120)
    rows = {r["stage"]: r for r in json.loads(shown.stdout)["stages"]}
    assert all(rows[s]["state"] == "stale" for s in ("float", "calibration", "qat", "export", "compile"))
    table = subprocess.run([STEREOKIT, "status", str(run)], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "stale" in table.stdout and "next:" in table.stdout


def test_an_all_8_bit_map_compiles_and_names_its_bilinear_resizes(tiny_data: Path, tmp_path: Path) -> None:
    """ONNX Runtime's CPU provider keeps an 8-bit bilinear Resize as DQ -> Resize -> Q in float (it
    drops the Q/DQ in nearest mode only): compile accepts that group and the manifest names it."""
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, max_steps=8) + DEPLOY + ["quant.int16_modules=[]"])
    train_through_qat(cfg, run)
    run_compile(run / "qat", measure_runs=1, runtime="ort")
    manifest = load_hbm(run / "compile-ort" / "model.hbm").manifest
    assert manifest["int16_simulated"] == []
    assert sorted(manifest["resize_simulated"]) == [f"/model/model/head/refine.{k}/upsample/op/Resize" for k in range(4)]
    nodes = json.loads((run / "compile-ort" / "perf.json").read_text())["nodes"]
    assert {n["runs"] for n in nodes if n["predicted"] == "accelerator"} == {"integer", "fused", "resize-simulation"}
    result = run_validate(run / "compile-ort", show_progress=False)
    assert result.passed and result.mean_abs_diff_px < 0.01  # the 8-bit output's step here is 0.125 px
