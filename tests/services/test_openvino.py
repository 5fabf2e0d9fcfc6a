"""compile --runtime openvino: the same QDQ IR as OpenVINO's model, byte-reproducible, check confirmed by
OpenVINO's own per-layer precisions, and validate-bpu / infer running it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from stereokit.deploy import openvino_runtime
from stereokit.deploy.checker import check_model
from stereokit.deploy.compiler import confirm_check, lower_to_integer
from stereokit.deploy.hbm import load_hbm
from stereokit.deploy.target import load_target
from stereokit.lineage import require_stage
from stereokit.runs import run_config
from stereokit.data.synth import render_scene
from stereokit.data.transforms import preprocess_image
from stereokit.deploy.runtime import EPE_REL_BAR, open_runtime_model
from stereokit.services.compile import (RuntimeAccuracy, accuracy_scenes, choose_runtime, fastest_runtime, openvino_float_nodes,
                                        run_compile, runtime_accuracy)
from stereokit.services.infer import run_infer
from stereokit.services.validate_bpu import run_validate
from tests.services.test_deploy import deployed  # noqa: F401 - the module's fixture
from tests.cli import assert_refused, run

pytestmark = pytest.mark.skipif(not openvino_runtime.available(), reason="OpenVINO is not installed")


@pytest.fixture(scope="module")
def ov_run(deployed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    run_dir = tmp_path_factory.mktemp("ov") / "run"
    shutil.copytree(deployed, run_dir)
    run_compile(run_dir / "qat", runtime="openvino", measure_runs=1)
    return run_dir


def test_openvino_artifact_is_reproducible_and_says_what_ran(ov_run: Path, tmp_path: Path) -> None:
    hbm = ov_run / "compile-openvino" / "model.hbm"
    first = hbm.read_bytes()
    manifest = load_hbm(hbm).manifest
    assert manifest["runtime"] == "openvino" and manifest["runtime_version"] == openvino_runtime.version()
    assert manifest["runtime_float_nodes"] == []  # every node check puts on the integer path runs u8/i8 in OpenVINO
    assert (ov_run / "compile" / "model.hbm").is_file()  # the default compile is left as it was
    run_compile(ov_run / "qat", runtime="openvino", measure_runs=1, force=True)
    assert hbm.read_bytes() == first


def test_openvino_names_a_node_check_put_on_the_integer_path_that_it_runs_in_float(deployed: Path) -> None:  # noqa: F811
    ir_path = deployed / "export" / "model.onnx"
    ir = onnx.load(str(ir_path))
    report = check_model(ir, load_target("bpu-sim"), [])
    nodes = confirm_check(report, lower_to_integer(ir_path.read_bytes()))
    # give one conv float weights (no DequantizeLinear of int8 weights): OpenVINO cannot run it in int8
    producers = {o: n for n in ir.graph.node for o in n.output}
    victim = next(n for n in ir.graph.node if n.op_type == "Conv" and producers.get(n.input[1]) is not None
                  and producers[n.input[1]].op_type == "DequantizeLinear" and "neck" in n.name)
    quantize = producers[producers[victim.input[1]].input[0]]  # float weights -> QuantizeLinear -> DequantizeLinear
    assert quantize.op_type == "QuantizeLinear"
    victim.input[1] = quantize.input[0]  # the conv reads the float weights directly
    blob = openvino_runtime.convert_ir(ir.SerializeToString())
    flagged = openvino_float_nodes(blob, nodes, "test")
    assert victim.name in [f["node"] for f in flagged], flagged


def test_validate_and_infer_run_the_openvino_model(ov_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    result = run_validate(ov_run / "compile-openvino", show_progress=False)
    assert result.provider.startswith("openvino") and result.passed and result.runtime == f"openvino {openvino_runtime.version()}"
    assert set(result.bar) == {"epe_rel_diff"}  # its own rounding: judged by EPE, not per pixel
    assert result.mean_abs_diff_px < 0.05
    assert result.epe <= (1 + EPE_REL_BAR) * result.int_infer_epe
    assert (ov_run / "compile-openvino" / "validate.json").is_file()
    from stereokit.data.sceneflow import read_split

    sample = read_split(tiny_data / "SceneFlow", "test")[0][0]
    inferred = run_infer(ov_run / "compile-openvino" / "model.hbm", tiny_data / "SceneFlow" / sample.left,
                         tiny_data / "SceneFlow" / sample.right, tmp_path / "out")
    assert inferred.provider.startswith("openvino")
    assert_refused(run("compile", str(ov_run / "qat"), "--runtime", "tensorrt"), "--runtime tensorrt: not installed on this machine (installed: ort, openvino)")
    assert_refused(run("compile", str(ov_run / "qat"), "--runtime", "tvm"), "known: ort, openvino, tensorrt")


def test_the_openvino_profile_names_its_source_and_its_float_nodes(deployed: Path) -> None:  # noqa: F811
    profile = load_target("openvino-cpu")
    assert "runtimePrecision" in profile.source
    ir_path = deployed / "export" / "model.onnx"
    report = check_model(onnx.load(str(ir_path)), profile, [])
    fallback = {f.name for f in report.fallbacks}
    assert any("soft_argmin" in n for n in fallback)  # no int16 kernels: the precision map's nodes run in float
    # and OpenVINO's own report agrees: nothing this profile puts on the integer path runs in float
    nodes = confirm_check(report, lower_to_integer(ir_path.read_bytes()))
    assert openvino_float_nodes(openvino_runtime.convert_ir(ir_path.read_bytes()), nodes, "ir") == []


def test_plain_compile_keeps_the_fastest_runtime_it_timed(deployed: Path) -> None:  # noqa: F811
    perf = json.loads((deployed / "compile" / "perf.json").read_text())
    assert set(perf["runtime_ms"]) == {"ort", "openvino"} and min(perf["runtime_ms"].values()) > 0
    chosen = load_hbm(deployed / "compile" / "model.hbm").manifest["runtime"]
    judged = RuntimeAccuracy(perf["runtime_epe_px"], perf["runtime_disagreement_px"], perf["runtime_epe_scenes"])
    assert chosen == choose_runtime(perf["runtime_ms"], judged)[0] == perf["runtime"]
    assert chosen == require_stage(deployed, "compile").details["runtime"]
    # a faster runtime was held against ONNX Runtime's accuracy; a slower one did not need to be
    fastest = fastest_runtime(perf["runtime_ms"])
    assert set(perf["runtime_epe_px"]) == ({"ort", fastest} if fastest != "ort" else set())
    assert set(perf["runtime_disagreement_px"]) == ({fastest} - {"ort"})
    if chosen == "openvino":
        assert perf["runtime_epe_px"]["openvino"] <= (1 + EPE_REL_BAR) * perf["runtime_epe_px"]["ort"]
    assert perf["measured_cpu_latency_ms"]["compiled_int8_ms"] == perf["runtime_ms"][chosen]
    assert run_validate(deployed / "compile", show_progress=False).passed


def test_another_runtime_replaces_onnx_runtime_only_on_a_clear_win() -> None:
    assert fastest_runtime({"ort": 10.0}) == "ort"
    assert fastest_runtime({"ort": 10.0, "openvino": 9.5}) == "ort"  # within timing noise
    assert fastest_runtime({"ort": 10.0, "openvino": 8.0}) == "openvino"
    assert fastest_runtime({"ort": 8.0, "openvino": 10.0}) == "ort"


def test_a_faster_runtime_that_is_less_accurate_is_passed_over_with_the_reason() -> None:
    timings = {"ort": 45.1, "openvino": 34.7}

    def judged(ort: float, openvino: float) -> RuntimeAccuracy:
        return RuntimeAccuracy({"ort": ort, "openvino": openvino}, {"openvino": 0.3}, scenes=12)

    assert choose_runtime(timings, judged(2.0, 2.009)) == ("openvino", None)  # within 0.5%
    assert choose_runtime(timings, judged(2.0, 1.7)) == ("openvino", None)  # more accurate is no fault
    chosen, why = choose_runtime(timings, judged(2.0, 2.02))
    assert chosen == "ort" and why is not None
    assert "openvino was faster (34.7 vs 45.1 ms)" in why and "on 12 generated scenes was 2.020 px against ONNX Runtime's 2.000" in why
    assert "0.5% bar" in why
    assert choose_runtime({"ort": 10.0, "openvino": 9.5}, RuntimeAccuracy({}, {})) == ("ort", None)  # not faster enough to be judged
    # the scenes add up to ACCURACY_PIXELS, between 8 and 64 of them
    assert accuracy_scenes(544, 960) == 8 and accuracy_scenes(128, 256) == 62 and accuracy_scenes(64, 128) == 64
    assert accuracy_scenes(1536, 2272) == 8


def test_the_accuracy_check_scores_each_runtime_against_generated_ground_truth(deployed: Path) -> None:  # noqa: F811
    """ONNX Runtime's EPE on one scene as the metric defines it (pixels both views see); OpenVINO beside
    it; and the figures compile recorded for the same scenes."""
    cfg = run_config(deployed)
    ir = (deployed / "export" / "model.onnx").read_bytes()
    models = {"ort": lower_to_integer(ir), "openvino": openvino_runtime.convert_ir(ir)}
    h, w = cfg.deploy.input_height, cfg.deploy.input_width
    one = runtime_accuracy(models, [], cfg.data, cfg.model.maxdisp, h, w, scenes=1)
    scene = render_scene(np.random.default_rng(0), h, w, min(cfg.model.maxdisp, w / 4))
    ort_model = open_runtime_model("ort", models["ort"], "ort", cfg.model.maxdisp)
    disp = ort_model(*(preprocess_image(v, cfg.data).numpy() for v in (scene.left, scene.right)))[0, 0]
    assert one.epe == {"ort": pytest.approx(float(np.abs(disp - scene.disp)[scene.nonoccluded].mean()), rel=1e-5)}
    assert one.disagreement_px == {}
    both = runtime_accuracy(models, ["openvino"], cfg.data, cfg.model.maxdisp, h, w)
    assert set(both.epe) == {"ort", "openvino"} and 0.0 < both.epe["openvino"] < cfg.model.maxdisp
    assert both.scenes == accuracy_scenes(h, w) and one.scenes == 1
    assert 0.0 <= both.disagreement_px["openvino"] < cfg.model.maxdisp
    recorded = json.loads((deployed / "compile" / "perf.json").read_text())
    if "openvino" in recorded["runtime_epe_px"]:  # plain compile judged it because OpenVINO was the faster here
        assert recorded["runtime_epe_px"] == pytest.approx(both.epe, rel=0.01)
