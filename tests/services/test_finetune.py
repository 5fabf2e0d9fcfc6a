"""Real-benchmark packs and fine-tuning: a KITTI-format folder of generated scenes (sparse uint16
ground truth) is packed, a model fine-tuned on it scores a lower D1-all, eval of the pack and of the
folder agree, and the loss never reads a pixel without ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stereokit.config import load_config
from stereokit.data.dataset import SceneFlowLMDB
from stereokit.models import build_stereonet, multiscale_loss
from stereokit.runs import read_stage_record
from stereokit.services.eval import run_eval_benchmark
from stereokit.services.pack import run_pack_benchmark
from stereokit.services.predictors import open_predictor, stage_predictor
from stereokit.services.train import run_train_float
from stereokit.weights import write_weights
from tests.conftest import SMALL_OVERRIDES
from tests.data import benchmark_folders as bf
from tests.cli import assert_refused, run


def test_the_loss_ignores_pixels_without_ground_truth() -> None:
    gt = torch.full((1, 1, 8, 8), 10.0)
    gt[..., ::2, :] = 0  # sparse: every other row unknown
    out = torch.full((1, 1, 8, 8), 0.2)
    base = multiscale_loss([out], gt, 64, [1.0])
    changed = out.clone()
    changed[..., ::2, :] = 0.9  # wild predictions where nothing is known
    assert multiscale_loss([changed], gt, 64, [1.0]).item() == pytest.approx(base.item())
    changed[..., 1, 1] = 0.9
    assert multiscale_loss([changed], gt, 64, [1.0]).item() > base.item()


@pytest.mark.slow
def test_fine_tuning_on_a_sparse_kitti_pack_lowers_its_d1(tmp_path: Path) -> None:
    bf.write_kitti(tmp_path / "kitti_train", 2015, frames=16, seed=50)
    bf.write_kitti(tmp_path / "kitti_test", 2015, frames=3, seed=90)
    packed = run_pack_benchmark("kitti2015", tmp_path / "kitti_train", tmp_path / "lmdb", show_progress=False)
    meta = SceneFlowLMDB(packed.target).meta
    assert meta["source_format"] == "kitti2015" and meta["sparse"] and packed.count == 16
    raw = SceneFlowLMDB(packed.target).raw(0)
    assert "nonocc" in raw and 0.2 < (raw["disp"] > 0).mean() < 0.4  # sparse, as written
    cfg = load_config(None, SMALL_OVERRIDES + [
        "model.maxdisp=32", f"data.train_lmdb={packed.target}", f"data.test_lmdb={packed.target}", "data.crop=[64, 128]",
        "data.num_workers=0", "data.val_count=2", "device=cpu", "train.float.batch_size=4", "train.float.max_steps=60",
        "train.float.lr=3e-3", "train.float.warmup_epochs=0", "train.float.val_every_epochs=5"])
    torch.manual_seed(0)
    write_weights(tmp_path / "start.pt", build_stereonet(cfg.model).state_dict(), cfg, {"note": "untrained start"})
    # at the pairs' own size: auto scale reads the untrained model's first pass, which says nothing
    before = run_eval_benchmark("kitti2015", tmp_path / "kitti_test", open_predictor(tmp_path / "start.pt", scale=1.0), tmp_path / "e0", False)
    run_train_float(cfg, tmp_path / "run", show_progress=False, init=str(tmp_path / "start.pt"))
    assert read_stage_record(tmp_path / "run", "float").details["init"]["path"] == str(tmp_path / "start.pt")
    after = run_eval_benchmark("kitti2015", tmp_path / "kitti_test", stage_predictor(tmp_path / "run", "float", 1.0), tmp_path / "e1", False)
    assert after.d1_all < 0.8 * before.d1_all, (before.d1_all, after.d1_all)
    assert after.nonocc is not None and after.pooled["d1_all"] <= 1.0
    assert len(after.pictures) == 3 and json.loads((tmp_path / "e1" / "eval.json").read_text())["images"] == 3
    # the packed copy scores as the folder does (the same pixels, the same metric)
    predictor = stage_predictor(tmp_path / "run", "float")
    folder = run_eval_benchmark("kitti2015", tmp_path / "kitti_train", predictor, tmp_path / "e2", False)
    lmdb = SceneFlowLMDB(packed.target)
    from stereokit.engine.metrics import BenchmarkMetrics

    m = BenchmarkMetrics()
    for i in range(len(lmdb)):
        r = lmdb.raw(i)
        m.update(predictor(r["imgl"], r["imgr"])[0], r["disp"], r["disp"] > 0)
    assert m.summary()["d1_all"] == pytest.approx(folder.d1_all, abs=1e-9)


def test_bad_benchmark_input_through_the_cli(tmp_path: Path) -> None:
    bf.write_kitti(tmp_path / "k", 2015, frames=1)
    import cv2

    cv2.imwrite(str(tmp_path / "k" / "training" / "disp_occ_0" / "000000_10.png"), np.zeros((64, 128), np.uint8))
    assert_refused(run("pack", "kitti2015", "--src-data-dir", str(tmp_path / "k"), "--target-data-dir", str(tmp_path / "out")),
                   "must be 16-bit")
    assert not (tmp_path / "out").exists()
    assert_refused(run("eval", "--dataset", "kitty", "--data-dir", str(tmp_path / "k"), "--model", "shipped"),
                   "not a known benchmark; known: middlebury, kitti2012, kitti2015, eth3d, sceneflow")
    bf.write_middlebury_2014(tmp_path / "m", 1)
    (tmp_path / "m" / "calib.txt").unlink()
    assert_refused(run("eval", "--dataset", "middlebury", "--data-dir", str(tmp_path / "m"), "--model", "shipped",
                       "--save-path", str(tmp_path / "never")), "calib.txt: missing")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("dataset", ["middlebury", "kitti2012", "eth3d"])
def test_eval_on_each_benchmark_folder_with_the_shipped_model(tmp_path: Path, dataset: str) -> None:
    if dataset == "middlebury":
        bf.write_middlebury_2014(tmp_path / "data" / "Toy", 3)
    elif dataset == "kitti2012":
        bf.write_kitti(tmp_path / "data", 2012, frames=2)
    else:
        bf.write_eth3d(tmp_path / "data", 2)
    result = run("eval", "--dataset", dataset, "--data-dir", str(tmp_path / "data"), "--save-path", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for key in ("epe", "bad1", "bad2", "bad3", "d1_all", "pixels", "pooled", "nonocc"):
        assert key in payload, key
    assert 0 <= payload["nonocc"]["bad2"] <= payload["bad2"] + 1e-9 or payload["nonocc"]["pixels"] < payload["pixels"]
    assert payload["pixels"] > 0 and np.isfinite(payload["epe"])
    assert len(list((tmp_path / "out").glob("*.png"))) >= 1
