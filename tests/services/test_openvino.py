"""compile --runtime openvino: the same QDQ IR as OpenVINO's model, byte-reproducible, check confirmed by
OpenVINO's own per-layer precisions, and validate-bpu / infer running it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from stereokit.deploy import openvino_runtime
from stereokit.deploy.checker import check_model
from stereokit.deploy.compiler import confirm_check, lower_to_integer
from stereokit.deploy.hbm import load_hbm
from stereokit.deploy.target import load_target
from stereokit.lineage import require_stage
from stereokit.runs import run_config
from stereokit.services.compile import choose_runtime, disagreement_px, fastest_runtime, openvino_float_nodes, run_compile
from stereokit.services.infer import run_infer
from stereokit.services.validate_bpu import run_validate
from tests.services.test_deploy import deployed  # noqa: F401 - the module's fixture
from tests.test_bad_input import assert_refused, run

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
    assert "epe_rel_diff" in result.bar  # its own rounding: judged by EPE and the mean, not per pixel
    assert result.mean_abs_diff_px < 0.05
    assert abs(result.epe - result.int_infer_epe) <= 0.005 * result.int_infer_epe
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
    bar = run_config(deployed).deploy.max_mean_abs_diff_px
    assert chosen == choose_runtime(perf["runtime_ms"], perf["runtime_disagreement_px"], bar)[0] == perf["runtime"]
    assert chosen == require_stage(deployed, "compile").details["runtime"]
    # a faster runtime was held against ONNX Runtime's disparity; a slower one did not need to be
    fastest = fastest_runtime(perf["runtime_ms"])
    assert set(perf["runtime_disagreement_px"]) == ({fastest} - {"ort"})
    if chosen == "openvino":
        assert perf["runtime_disagreement_px"]["openvino"] <= bar
    assert perf["measured_cpu_latency_ms"]["compiled_int8_ms"] == perf["runtime_ms"][chosen]
    assert run_validate(deployed / "compile", show_progress=False).passed


def test_another_runtime_replaces_onnx_runtime_only_on_a_clear_win() -> None:
    assert fastest_runtime({"ort": 10.0}) == "ort"
    assert fastest_runtime({"ort": 10.0, "openvino": 9.5}) == "ort"  # within timing noise
    assert fastest_runtime({"ort": 10.0, "openvino": 8.0}) == "openvino"
    assert fastest_runtime({"ort": 8.0, "openvino": 10.0}) == "ort"


def test_a_faster_runtime_that_disagrees_with_onnx_runtime_is_passed_over_with_the_reason() -> None:
    timings = {"ort": 45.1, "openvino": 34.7}
    assert choose_runtime(timings, {"openvino": 0.05}, 0.1) == ("openvino", None)
    chosen, why = choose_runtime(timings, {"openvino": 0.56}, 0.1)
    assert chosen == "ort" and why is not None
    assert "openvino was faster (34.7 vs 45.1 ms)" in why and "0.560 px mean" in why and "0.1 px bar" in why
    assert choose_runtime({"ort": 10.0, "openvino": 9.5}, {}, 0.1) == ("ort", None)  # not faster enough to be checked


def test_the_disagreement_check_runs_both_runtimes_on_a_generated_scene(deployed: Path) -> None:  # noqa: F811
    """ONNX Runtime against itself is exact; OpenVINO against it is the figure compile recorded, up to its own noise."""
    cfg = run_config(deployed)
    ir = (deployed / "export" / "model.onnx").read_bytes()
    models = {"ort": lower_to_integer(ir), "openvino": openvino_runtime.convert_ir(ir)}
    h, w = cfg.deploy.input_height, cfg.deploy.input_width
    assert disagreement_px(models, "ort", cfg.data, cfg.model.maxdisp, h, w) == 0.0
    other = disagreement_px(models, "openvino", cfg.data, cfg.model.maxdisp, h, w)
    assert 0.0 <= other < cfg.model.maxdisp
    # the same scene every time; OpenVINO's own run-to-run spread (~0.001 px here) stays far below the 0.1 px bar
    assert disagreement_px(models, "openvino", cfg.data, cfg.model.maxdisp, h, w) == pytest.approx(other, abs=0.01)
    recorded = json.loads((deployed / "compile" / "perf.json").read_text())["runtime_disagreement_px"]
    if "openvino" in recorded:  # plain compile measured it because OpenVINO was the faster here
        assert recorded["openvino"] == pytest.approx(other, abs=0.01)
