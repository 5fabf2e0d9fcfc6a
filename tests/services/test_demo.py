from __future__ import annotations

import json
from pathlib import Path

import pytest

from stereokit.lineage import require_stage
from stereokit.weights import load_shipped


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports_consistent_numbers(tmp_path: Path) -> None:
    from stereokit.services.demo import run_demo

    said: list[str] = []
    out = tmp_path / "demo"
    result = run_demo(out, minutes=0.3, device="cpu", num_train=24, num_test=3, say=said.append)
    run = out / "run"
    for stage in ("float", "calibration", "qat", "export", "compile"):
        assert require_stage(run, stage).status == "finished"
    # the float stage fine-tunes the shipped model: its record names the weights it started from
    init = require_stage(run, "float").details["init"]
    assert init["from"] == "shipped" and init["sha256"] == load_shipped().sha256
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"float", "calibration", "qat", "int_infer", "compiled"}
    for stage in ("float", "calibration", "qat", "int_infer"):
        evaluated = json.loads((run / stage / "eval" / "eval.json").read_text())
        assert summary["stages"][stage]["epe"] == evaluated["epe"]
    validation = json.loads((run / "compile" / "validate.json").read_text())
    assert summary["stages"]["compiled"]["epe"] == validation["epe"]
    assert summary["agreement"]["passed"] == validation["passed"] == result.validate_passed
    assert summary["agreement"]["mean_abs_diff_px"] == validation["mean_abs_diff_px"]
    assert summary["constant_baseline_epe"] > 0 and summary["params"] == result.params > 0
    assert set(summary["latency_ms"]) == set(summary["latency_ran_on"]) == {"torch_float", "onnx_float", "compiled"}
    assert summary["latency_ran_on"]["compiled"].startswith(validation["provider"])  # the runtime plain compile kept
    for path in summary["artifacts"].values():
        assert Path(path).exists(), path
    assert set(summary["real_pair"]) == {"demo compiled", "shipped float"}
    assert all(0 <= v["bad2"] <= 1 for v in summary["real_pair"].values())
    assert Path(summary["artifacts"]["beside_motorcycle"]).is_file()
    report = (out / "report.html").read_text()
    assert "data:image/png;base64" in report and f"{summary['stages']['qat']['epe']:.4f}" in report
    assert "<th>ran on</th>" in report and summary["latency_ran_on"]["onnx_float"] in report
    assert summary["float_init"]["sha256"] == init["sha256"] and f"sha256 {init['sha256'][:12]}" in report
    assert any("train float" in line for line in said)

    said.clear()
    again = run_demo(out, minutes=0.3, device="cpu", num_train=24, num_test=3, say=said.append)
    assert any("train float (from the shipped model): already done, skipped" in line for line in said)
    assert again.stages["float"] == result.stages["float"]
