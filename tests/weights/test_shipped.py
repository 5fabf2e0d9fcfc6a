"""The shipped model: its weights load, match their hash and score the card's figure; damage is refused;
infer without --model runs it; --init starts a run from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stereokit.config import load_config
from stereokit.data.pfm import read_pfm
from stereokit.engine.cleanup import clean_disparity
from stereokit.errors import StereokitError
from stereokit.services.predictors import open_predictor
from stereokit.weights import PACKAGE_DIR, load_shipped, manifest, read_weights, sha256_of
from stereokit.weights.check import check_set_epe
from tests.test_bad_input import assert_refused, run, tree_state


def test_the_shipped_weights_match_their_hash_and_the_cards_figure() -> None:
    entry = manifest("shipped")
    weights = load_shipped("shipped")
    assert weights.sha256 == entry["sha256"] == sha256_of(PACKAGE_DIR / entry["file"])
    assert weights.model == load_config(Path("configs/shipped.yaml")).model
    predictor = open_predictor(scale=1.0)  # no --model: the shipped one; the check set at its own size
    predictor.raw = True  # the network's own values, as ship_weights.py scored them
    assert predictor.name == "shipped" and predictor.maxdisp == weights.model.maxdisp
    figures = check_set_epe(lambda left, right: predictor(left, right)[0])
    assert figures["epe"] == pytest.approx(entry["check_set"]["epe"], rel=0.01, abs=0.02)
    assert figures["bad3"] == pytest.approx(entry["check_set"]["bad3"], abs=0.01)


def test_damaged_or_truncated_weights_are_refused_in_one_sentence(tmp_path: Path) -> None:
    entry = manifest("shipped")
    data = bytearray((PACKAGE_DIR / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(StereokitError, match="damaged or was changed"):
        read_weights(tmp_path / "flipped.pt", entry["sha256"])
    (tmp_path / "short.pt").write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(StereokitError, match="not a stereokit weights file"):
        read_weights(tmp_path / "short.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(StereokitError, match="not a stereokit weights file"):
        read_weights(tmp_path / "other.pt")


def test_infer_without_a_model_runs_the_shipped_one(tmp_path: Path) -> None:
    from skimage.data import stereo_motorcycle

    left, right, _ = stereo_motorcycle()
    size = (250, 170)  # not a multiple of 32: padded and said
    cv2.imwrite(str(tmp_path / "l.png"), cv2.resize(cv2.cvtColor(left, cv2.COLOR_RGB2BGR), size))
    cv2.imwrite(str(tmp_path / "r.png"), cv2.resize(cv2.cvtColor(right, cv2.COLOR_RGB2BGR), size))
    result = run("infer", "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"), "--save-path", str(tmp_path / "out"),
                 "--baseline", "0.19", "--f", "1000", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    # disparities of ~20 px: auto scale upscales the pair 4x before it pads it
    assert payload["model"] == "shipped" and "resized 250x170 to 1000x680 (auto scale 4.00" in payload["handling"]
    assert "padded 1000x680 to 1024x704" in payload["handling"]
    one = run("infer", "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"), "--save-path", str(tmp_path / "one"),
              "--scale", "1", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["handling"].startswith("padded 250x170 to 256x192")
    assert "cleaned (the strip the right view cannot see raised, a 3x3 median)" in json.loads(one.stdout)["handling"]
    raw = run("infer", "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"), "--save-path", str(tmp_path / "raw"),
              "--scale", "1", "--raw", "--json")
    assert raw.returncode == 0 and "cleaned" not in json.loads(raw.stdout)["handling"], raw.stderr
    cleaned, own = read_pfm(tmp_path / "one" / "disparity.pfm"), read_pfm(tmp_path / "raw" / "disparity.pfm")
    np.testing.assert_array_equal(cleaned, clean_disparity(own))  # the same network pass, cleaned after
    assert not np.array_equal(cleaned, own)
    multi = run("infer", "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"), "--save-path", str(tmp_path / "multi"),
                "--scale", "1", "--multiscale", "--json")
    assert multi.returncode == 0 and "median of 3 passes at 225x153, 250x170, 275x187" in json.loads(multi.stdout)["handling"], multi.stderr
    assert_refused(run("infer", "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"), "--save-path",
                       str(tmp_path / "never"), "--scale", "big"), "--scale 'big' is neither 'auto' nor a number")
    for key in ("disparity_pfm", "disparity_color", "depth_pfm", "depth_mm_png", "cloud_ply", "side_by_side"):
        assert Path(payload["outputs"][key]).is_file()
    assert_refused(run("infer", "--model", "no-such-model", "--imgl", str(tmp_path / "l.png"), "--imgr", str(tmp_path / "r.png"),
                       "--save-path", str(tmp_path / "never")), "not a shipped model (known: shipped)")
    assert not (tmp_path / "never").exists()


def _shipped_network_on(root: Path) -> list[str]:
    return [f"data.train_lmdb={root / 'lmdb' / 'train_lmdb'}", f"data.test_lmdb={root / 'lmdb' / 'test_lmdb'}",
            "data.crop=[64, 128]", "data.num_workers=0", "data.val_count=4", "device=cpu", "train.float.batch_size=2",
            "train.float.max_steps=1", "train.float.lr=1e-12", "train.float.warmup_epochs=0", "train.float.amp='off'",
            "train.float.channels_last=false"]


def test_init_shipped_starts_from_its_weights_and_refuses_another_network(tiny_data: Path, tmp_path: Path) -> None:
    from stereokit.services.train import run_train_float

    cfg = load_config(Path("configs/shipped.yaml"), _shipped_network_on(tiny_data))
    result = run_train_float(cfg, tmp_path / "ft", show_progress=False, init="shipped")
    record = json.loads((tmp_path / "ft" / "float" / "stage.json").read_text())
    assert record["details"]["init"] == {"from": "shipped", "sha256": manifest("shipped")["sha256"]}  # no machine path
    trained = torch.load(tmp_path / "ft" / "float" / "checkpoint.pt", weights_only=True)["model"]
    shipped = load_shipped().state_dict
    convs = [k for k in shipped if k.endswith("weight") and shipped[k].dim() == 4]
    assert convs and all(torch.allclose(trained[k], shipped[k], atol=1e-6) for k in convs)
    assert result.steps == 1
    # a run whose network is the recipe's: refused, naming the setting, nothing written
    shutil.copytree(tiny_data, tmp_path / "data")
    before = tree_state(tmp_path)
    overrides = [f"--set={o}" for o in _shipped_network_on(tiny_data)]
    refused = run("train", "--stage", "float", "--init", "shipped", "--run-dir", str(tmp_path / "other"), *overrides)
    assert_refused(refused, "its network differs from this run's config (model.out_channels=")
    assert tree_state(tmp_path) == before and not (tmp_path / "other").exists()
