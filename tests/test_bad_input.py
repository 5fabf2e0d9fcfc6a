"""Bad input through the real CLI: non-zero exit, one sentence naming the file or flag, no
traceback, nothing written or changed (the tree is hashed before and after)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stereokit.config import config_to_yaml, load_config
from stereokit.data.sceneflow import read_split
from tests.cli import assert_all_refused, assert_refused, run, tree_state
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def workspace(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny data with a finished float run beside it."""
    root = tmp_path_factory.mktemp("bad")
    shutil.copytree(tiny_data, root / "data")
    cfg = load_config(None, tiny_overrides(root / "data", epochs=1))
    (root / "cfg.yaml").write_text(config_to_yaml(cfg))
    result = run("train", "--config", str(root / "cfg.yaml"), "--run-dir", str(root / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    return root


def cases(root: Path) -> list[tuple[tuple[str, ...], str]]:
    data, run_dir, cfg = root / "data", root / "run", root / "cfg.yaml"
    not_image = root / "not_an_image.png"
    not_image.write_bytes(b"hello")
    fake_ckpt = root / "fake.pt"
    fake_ckpt.write_text("not a checkpoint")
    a_file = root / "a_file.txt"
    a_file.write_text("a file, not a folder")
    odd = root / "odd[/]name[bold].png"  # legal file names that look like Rich markup
    # a truncated copy of the training pack: reading past its end would kill the process (SIGBUS)
    cut = root / "cut_lmdb"
    shutil.copytree(data / "lmdb" / "train_lmdb", cut)
    os.truncate(cut / "data.mdb", (cut / "data.mdb").stat().st_size // 2)
    # a run whose parent checkpoint was damaged, and one whose config.yaml was edited after float
    damaged = root / "damaged_run"
    shutil.copytree(run_dir, damaged)
    (damaged / "float" / "best.pt").write_bytes(b"not the weights any more")
    edited = root / "edited_run"
    shutil.copytree(run_dir, edited)
    (edited / "config.yaml").write_text((edited / "config.yaml").read_text().replace("seed: 0", "seed: 5"))
    image = data / "SceneFlow" / read_split(data / "SceneFlow", "test")[0][0].left
    return [
        (("config", "show", "--set", "model.bogus=1"), "model.bogus"),
        # a file where a folder belongs, a folder where a file belongs
        (("synth", "--out", str(a_file), "--num-train", "1"), "--out is a file, not a folder"),
        (("pack", "sceneflow", "--src-data-dir", str(data / "SceneFlow"), "--split-name", "test",
          "--target-data-dir", str(a_file)), "--target-data-dir is a file, not a folder"),
        (("check", str(run_dir), "--target", str(root)), "is a directory, not a target profile"),
        (("infer", "--model", str(run_dir / "float"), "--imgl", str(image), "--imgr", str(image), "--save-path", str(a_file)),
         "--save-path is a file, not a folder"),
        # user text that looks like markup is printed as it is
        (("infer", "--model", str(run_dir / "float"), "--imgl", str(odd), "--imgr", str(odd)), "odd[/]name[bold].png"),
        (("eval", "--run-dir", str(run_dir), "--checkpoint", str(odd)), "odd[/]name[bold].png"),
        # a truncated LMDB
        (("train", "--config", str(cfg), "--run-dir", str(root / "r6"), "--set", f"data.train_lmdb={cut}"), "data.mdb: truncated"),
        # refused inputs that used to be found only after something was written
        (("train", "--config", str(cfg), "--run-dir", str(root / "r5"), "--set", "data.crop=[128, 256]"),
         "smaller than the training crop 256x128"),
        (("calibrate", "--run-dir", str(damaged)), "float/best.pt: its sha256 does not match"),
        (("calibrate", "--run-dir", str(edited)), "stale: it was made with another config"),
        (("train", "--config", str(cfg), "--run-dir", str(root / "r7"), "--set", "data.val_count=500"), "data.val_count: 500"),
        # a precision map the quantized stages could not use, refused before the float stage writes
        (("train", "--config", str(cfg), "--run-dir", str(root / "r8"), "--set", 'quant.int16_modules=["head.refine.*.nope"]'),
         "quant.int16_modules: 'head.refine.*.nope' names no module of the model"),
        (("train", "--config", str(cfg), "--run-dir", str(root / "r9"), "--set", 'quant.int16_modules=["neck.stem"]'),
         "'neck.stem' is off the disparity path"),
        (("train", "--config", str(cfg), "--run-dir", str(root / "r10"), "--set", "train.float.amp=fp16"),
         "train.float.amp=fp16 needs a CUDA device, this run uses cpu; use bf16 or off"),
        (("config", "show", "--set", "deploy.opset=17"), "deploy.opset 17 cannot hold the int16 QuantizeLinear"),
        # numbers and names checked before any work
        (("infer", "--model-inputs", f"imgl:{image},imgr:{image},baseline:abc"), "baseline 'abc' is not a number"),
        (("infer", "--model", str(run_dir / "float"), "--imgl", str(image), "--imgr", str(image), "--baseline", "nan", "--f", "1050"),
         "--baseline: nan must be a positive finite number"),
        (("infer", "--model", str(run_dir / "float"), "--imgl", str(image), "--imgr", str(image), "--baseline", "0.5", "--f", "inf"),
         "--f: inf must be a positive finite number"),
        (("synth", "--out", str(root / "new"), "--num-train", "1", "--workers", "-1"), "--workers: -1 must be at least 1"),
        (("status", str(root / "no_run")), "no such run directory"),
        (("calops", "--width", "100"), "multiple of 32"),
        (("synth", "--out", str(data), "--num-train", "1"), "already exists"),
        (("synth", "--out", str(root / "new"), "--num-train", "-1"), "--num-train"),
        (("pack", "sceneflow", "--src-data-dir", str(root / "nowhere"), "--split-name", "train",
          "--target-data-dir", str(root / "out")), "nowhere: data directory not found"),
        (("pack", "sceneflow", "--src-data-dir", str(root), "--split-name", "train",
          "--target-data-dir", str(root / "out")), "not a SceneFlow tree"),
        (("pack", "sceneflow", "--src-data-dir", str(data / "SceneFlow"), "--split-name", "train",
          "--target-data-dir", str(data / "lmdb")), "already exists; pass --force"),
        (("pack", "sceneflow", "--src-data-dir", str(data / "SceneFlow"), "--split-name", "val",
          "--target-data-dir", str(root / "out")), "--split-name"),
        (("train", "--config", str(cfg), "--run-dir", str(run_dir)), "pass --resume to continue it or --force"),
        (("train", "--config", str(cfg), "--run-dir", str(root / "r2"), "--set", "data.train_lmdb=/no/such_lmdb"),
         "such_lmdb: LMDB not found"),
        (("train", "--config", str(cfg), "--run-dir", str(root / "r3"), "--resume"), "nothing to resume"),
        (("train", "--stage", "bogus", "--run-dir", str(root / "r4")), "--stage"),
        (("eval", "--run-dir", str(root / "empty_run")), "no float stage here; run 'stereokit train --stage float --run-dir"),
        (("eval", "--run-dir", str(run_dir), "--checkpoint", str(fake_ckpt)), "fake.pt: not a stereokit checkpoint"),
        (("eval", "--run-dir", str(run_dir), "--checkpoint", str(not_image)), "not_an_image.png: not a stereokit checkpoint"),
        (("eval", "--run-dir", str(run_dir), "--scale", "2"), "--scale, --raw and --multiscale go with --dataset"),
        (("eval", "--run-dir", str(run_dir), "--multiscale"), "and --multiscale go with --dataset"),
        (("eval", "--run-dir", str(run_dir), "--raw"), "--raw and --multiscale go with --dataset"),
        (("eval", "--run-dir", str(run_dir), "--dataset", "middlebury", "--data-dir", str(root), "--scale", "0"),
         "--scale '0' must be 'auto' or a factor from 0.1 to 8"),
    ]


def test_every_bad_input_is_refused_cleanly(workspace: Path) -> None:
    assert_all_refused(workspace, cases(workspace))


def test_a_checkpoint_of_another_config_names_the_keys(workspace: Path, tmp_path: Path) -> None:
    other = load_config(workspace / "cfg.yaml", ["model.refine_levels=2", "model.loss_weights=[1, 1, 1]", "train.float.max_steps=1"])
    (tmp_path / "other.yaml").write_text(config_to_yaml(other))
    assert run("train", "--config", str(tmp_path / "other.yaml"), "--run-dir", str(tmp_path / "r"), "--quiet").returncode == 0
    before = tree_state(workspace)
    result = run("eval", "--run-dir", str(workspace / "run"), "--checkpoint", str(tmp_path / "r" / "float" / "best.pt"))
    assert_refused(result, "does not fit this model config (missing head.refine.2")
    assert tree_state(workspace) == before
