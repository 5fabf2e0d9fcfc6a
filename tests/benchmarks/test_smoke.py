"""Every benchmark that can run at a tiny size runs here, so a change that breaks one fails CI.
(Speed targets live in the benchmarks' own output and docs/performance.md, never in assertions.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.test_deploy import deployed  # noqa: F401 - a small trained run, for bench_precision

ROOT = Path(__file__).resolve().parents[2]

SMOKE = {
    "bench_infer": ["--runs", "1", "--height", "64", "--width", "128", "--demo"],
    "bench_real": ["--sizes", "half"],
    "bench_data": ["--pairs", "12", "--height", "64", "--width", "256", "--workers", "1", "--passes", "1"],
    "bench_train": ["--steps", "2", "--batch", "1"],
    "bench_learning": ["--minutes", "0.1", "--out", "learning"],
    "bench_allocator": ["--reps", "1"],
    "scene_grid": ["--out", "grid.jpg"],
    "bench_adapt": ["--size", "half", "--steps", "2", "--lrs", "1e-4"],
}
SAYS = {"bench_allocator": "allocator kept:", "scene_grid": "grid.jpg"}  # the others print a Markdown table


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_at_a_tiny_size(script: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *SMOKE[script]], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SAYS.get(script, "|") in proc.stdout
    if script == "scene_grid":
        assert (tmp_path / "grid.jpg").stat().st_size > 10_000


@pytest.mark.slow
def test_bench_scale_compares_auto_with_the_pairs_own_size(tmp_path: Path) -> None:
    synth = subprocess.run([sys.executable, "-m", "stereokit", "synth", "--out", str(tmp_path / "tune"), "--num-train", "1",
                            "--num-test", "2", "--height", "128", "--width", "256", "--maxdisp", "96", "--seed", "5"],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert synth.returncode == 0, synth.stderr[-3000:]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--data", str(tmp_path / "tune"), "--sizes",
                           "0.5", "--factors", "2"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| 0.5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 4 and cells[2].endswith("x)")  # own size, auto (with its mean factor), x2
    assert float(cells[2].rsplit("(", 1)[1].rstrip("x)")) > 1.0  # half-size scenes of 0-48 px: auto upscales


@pytest.mark.slow
def test_bench_network_trains_and_scores_both_networks(tmp_path: Path) -> None:
    commands = [["synth", "--out", str(tmp_path / "SceneFlow"), "--num-train", "6", "--num-test", "2", "--height", "128",
                 "--width", "256", "--maxdisp", "96", "--seed", "5"]]
    commands += [["pack", "sceneflow", "--src-data-dir", str(tmp_path / "SceneFlow"), "--split-name", split, "--pack-type", "lmdb",
                  "--target-data-dir", str(tmp_path / "lmdb")] for split in ("train", "test")]
    for command in commands:
        made = subprocess.run([sys.executable, "-m", "stereokit", *command], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert made.returncode == 0, made.stderr[-3000:]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_network.py"), "--train-lmdb", str(tmp_path / "lmdb" / "train_lmdb"),
                           "--test-lmdb", str(tmp_path / "lmdb" / "test_lmdb"), "--tune", str(tmp_path / "SceneFlow"), "--minutes", "0.02",
                           "--out", "out", "--tune-sizes", "1", "--real-sizes", "half", "--set", "data.crop=[64, 128]",
                           "--set", "train.float.batch_size=2", "--set", "data.val_count=2"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| shipped") or line.startswith("| recipe")}
    assert set(rows) == {"shipped", "recipe"}
    assert (tmp_path / "out" / "network.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "recipe" / "float" / "best.pt").is_file()


@pytest.mark.slow
def test_bench_precision_runs_on_a_small_run(deployed: Path, tmp_path: Path) -> None:  # noqa: F811
    shutil.copytree(deployed, tmp_path / "demo" / "run")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_precision.py"), "--demo", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| all 8-bit |" in proc.stdout and "| reference" in proc.stdout


@pytest.mark.slow
def test_spike_pt2e_runs_where_torchao_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("torchao", reason="the pt2e spike needs torchao and onnxscript, which stereokit does not depend on")
    pytest.importorskip("onnxscript", reason="the pt2e spike needs onnxscript")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "spike_pt2e.py")], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_probe_openvino_names_each_quantized_tensor(deployed: Path, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("openvino", reason="the probe compares OpenVINO with ONNX Runtime")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "probe_openvino.py"), str(deployed)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| neck/") or line.startswith("| head/")]
    assert len(rows) > 20 and "final disparity: mean |diff|" in proc.stdout


@pytest.mark.slow
def test_probe_int_infer_compares_each_quantized_tensor(deployed: Path, tmp_path: Path) -> None:  # noqa: F811
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "probe_int_infer.py"), str(deployed)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("model.")]
    assert len(rows) > 20 and any(r[0].startswith("model.neck.") for r in rows) and any(r[0].startswith("model.head.refine.") for r in rows)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("disparity over") and float(last.split("mean |diff| ")[1].split(" px")[0]) < 0.1
