"""Bad input through the real CLI: non-zero exit, one sentence naming the file or flag, no
traceback, nothing written or changed (the tree is hashed before and after)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stereokit.config import config_to_yaml, load_config
from tests.conftest import tiny_overrides

STEREOKIT = str(Path(sys.executable).parent / "stereokit")


def tree_state(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STEREOKIT, *args], capture_output=True, text=True, timeout=300)


def assert_refused(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0, result.stdout
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr


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
    other_cfg = root / "other.yaml"
    other_cfg.write_text(config_to_yaml(load_config(cfg, ["model.refine_levels=2", "model.loss_weights=[1, 1, 1]"])))
    return [
        (("config", "show", "--set", "model.bogus=1"), "model.bogus"),
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
        (("eval", "--run-dir", str(root / "empty_run")), "run 'stereokit train --stage float' first"),
        (("eval", "--run-dir", str(run_dir), "--checkpoint", str(fake_ckpt)), "fake.pt: not a stereokit checkpoint"),
        (("eval", "--run-dir", str(run_dir), "--checkpoint", str(not_image)), "not_an_image.png: not a stereokit checkpoint"),
    ]


def test_every_bad_input_is_refused_cleanly(workspace: Path) -> None:
    for args, needle in cases(workspace):
        before = tree_state(workspace)
        result = run(*args)
        assert_refused(result, needle)
        assert tree_state(workspace) == before, args


def test_a_checkpoint_of_another_config_names_the_keys(workspace: Path, tmp_path: Path) -> None:
    other = load_config(workspace / "cfg.yaml", ["model.refine_levels=2", "model.loss_weights=[1, 1, 1]", "train.float.max_steps=1"])
    (tmp_path / "other.yaml").write_text(config_to_yaml(other))
    assert run("train", "--config", str(tmp_path / "other.yaml"), "--run-dir", str(tmp_path / "r"), "--quiet").returncode == 0
    before = tree_state(workspace)
    result = run("eval", "--run-dir", str(workspace / "run"), "--checkpoint", str(tmp_path / "r" / "float" / "best.pt"))
    assert_refused(result, "does not fit this model config (missing head.refine.2")
    assert tree_state(workspace) == before
