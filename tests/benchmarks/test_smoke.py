"""Every benchmark that can run at a tiny size runs here, so a change that breaks one fails CI.
(Speed targets live in the benchmarks' own output and docs/performance.md, never in assertions.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

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
                           "0.5", "--factors", "2", "--multiscale"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| 0.5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 5 and cells[2].endswith("x)")  # own size, auto (with its mean factor), x2, auto multiscale
    assert cells[4] != cells[2].rsplit(" (", 1)[0]  # three passes are not the one
    assert float(cells[2].rsplit("(", 1)[1].rstrip("x)")) > 1.0  # half-size scenes of 0-48 px: auto upscales
    # bench_cleanup on the same scenes: infer's clean-up scores what bench_scale's auto (infer's default) scored
    strip = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cleanup.py"), "--data", str(tmp_path / "tune"),
                            "--sizes", "0.5", "--real-sizes", "", "--picture", str(tmp_path / "fill.png")], capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
    assert strip.returncode == 0, strip.stderr[-3000:]
    rules = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in strip.stdout.splitlines()
             if line.startswith("| ") and "/" in line and not line.startswith("| rule")}
    assert list(rules) == ["none (the network's values)", "neighbour", "larger", "smaller", "larger, 3x3 median (infer's)",
                           "larger, 5x5 median"]
    assert rules["larger, 3x3 median (infer's)"].split(" / ")[0] == cells[2].split(" / ")[0]
    assert "of the pixels with ground truth" in strip.stdout
    assert cv2.imread(str(tmp_path / "fill.png")).shape[1] == 6 * 320  # left, truth, network, filled, two errors


@pytest.fixture(scope="module")
def six_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six generated training scenes and two test scenes, packed: enough for a few training steps."""
    root = tmp_path_factory.mktemp("six")
    commands = [["synth", "--out", str(root / "SceneFlow"), "--num-train", "6", "--num-test", "2", "--height", "128",
                 "--width", "256", "--maxdisp", "96", "--seed", "5"]]
    commands += [["pack", "sceneflow", "--src-data-dir", str(root / "SceneFlow"), "--split-name", split, "--pack-type", "lmdb",
                  "--target-data-dir", str(root / "lmdb")] for split in ("train", "test")]
    for command in commands:
        made = subprocess.run([sys.executable, "-m", "stereokit", *command], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert made.returncode == 0, made.stderr[-3000:]
    return root


TINY_TRAINING = ["--tune-sizes", "1", "--real-sizes", "half", "--set", "data.crop=[64, 128]", "--set", "train.float.batch_size=2",
                 "--set", "data.val_count=2"]


def data_args(root: Path) -> list[str]:
    return ["--train-lmdb", str(root / "lmdb" / "train_lmdb"), "--test-lmdb", str(root / "lmdb" / "test_lmdb"), "--tune",
            str(root / "SceneFlow")]


def table_rows(stdout: str) -> dict[str, str]:
    """The Markdown table's rows by their first cell (header and rule left out)."""
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return {line.split("|")[1].strip(): line for line in rows[1:]}


@pytest.mark.slow
def test_bench_network_trains_and_scores_both_networks(six_scenes: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_network.py"), *data_args(six_scenes), "--minutes", "0.02",
                           "--out", "out", *TINY_TRAINING], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(table_rows(proc.stdout)) == {"shipped", "recipe"}
    assert (tmp_path / "out" / "network.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "recipe" / "float" / "best.pt").is_file()


@pytest.mark.slow
def test_bench_augment_trains_one_run_per_augmentation_off(six_scenes: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_augment.py"), *data_args(six_scenes), "--steps", "2",
                           "--noise-seed", "3", "--out", "out", *TINY_TRAINING], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(table_rows(proc.stdout)) == {"all on", "no random scale", "no colour jitter", "no occluding patches",
                                            "no vertical jitter", "all on, seed 3"}
    assert (tmp_path / "out" / "augment.png").stat().st_size > 10_000
    saved = yaml.safe_load((tmp_path / "out" / "no_occluding_patches" / "config.yaml").read_text())
    assert saved["data"]["augment"]["occlusion_prob"] == 0 and saved["data"]["augment"]["vertical_jitter"] == 0.5
    assert yaml.safe_load((tmp_path / "out" / "all_on_seed_3" / "config.yaml").read_text())["seed"] == 3
    # a run cut off on the way (stage.json still says running) resumes and is scored again; finished ones are kept
    cut = tmp_path / "out" / "no_vertical_jitter"
    record = json.loads((cut / "float" / "stage.json").read_text())
    (cut / "float" / "stage.json").write_text(json.dumps({**record, "status": "running", "finished": None}))
    (cut / "figures.json").unlink()
    kept = (tmp_path / "out" / "all_on" / "figures.json").stat().st_mtime_ns
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_augment.py"), *data_args(six_scenes), "--steps", "2",
                            "--noise-seed", "3", "--out", "out", *TINY_TRAINING], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((cut / "float" / "stage.json").read_text())["status"] == "finished"
    assert (cut / "figures.json").is_file()
    assert (tmp_path / "out" / "all_on" / "figures.json").stat().st_mtime_ns == kept


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
