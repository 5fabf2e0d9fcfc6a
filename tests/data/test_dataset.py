from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stereokit.config import load_config
from stereokit.data.dataset import SceneFlowFolder, SceneFlowLMDB, build_dataloader, build_dataset, validation_indices
from stereokit.data.pfm import read_pfm
from stereokit.data.sceneflow import read_split
from stereokit.data.transforms import build_transform
from stereokit.errors import DataError
from stereokit.services.pack import run_pack


@pytest.fixture(scope="module")
def packed(synth_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lmdb")
    for split in ("train", "test"):
        run_pack(synth_tree, split, out, show_progress=False)
    return out


def test_lmdb_samples_equal_the_files_pixel_for_pixel(synth_tree: Path, packed: Path) -> None:
    dataset = SceneFlowLMDB(packed / "train_lmdb")
    samples, _ = read_split(synth_tree, "train")
    assert len(dataset) == len(samples)
    for i, sample in enumerate(samples):
        got = dataset[i]
        assert np.array_equal(got["imgl"], cv2.imread(str(synth_tree / sample.left)))
        assert np.array_equal(got["imgr"], cv2.imread(str(synth_tree / sample.right)))
        assert np.array_equal(got["disp"], read_pfm(synth_tree / sample.disp))
        assert got["index"] == i


def test_folder_and_lmdb_datasets_agree(synth_tree: Path, packed: Path) -> None:
    folder = SceneFlowFolder(synth_tree, "test")
    lmdb_ds = SceneFlowLMDB(packed / "test_lmdb")
    assert len(folder) == len(lmdb_ds) == 3
    for i in range(3):
        a, b = folder[i], lmdb_ds[i]
        assert all(np.array_equal(a[k], b[k]) for k in ("imgl", "imgr", "disp"))


def test_training_crops_from_the_pack_equal_the_folders(synth_tree: Path, packed: Path) -> None:
    """The pack crops on views of the record; the folder crops decoded files: same tensors."""
    cfg = load_config(None, ["data.crop=[32, 64]"])
    transform = build_transform(cfg.data, train=True)
    folder = SceneFlowFolder(synth_tree, "train", transform, seed=3)
    lmdb_ds = SceneFlowLMDB(packed / "train_lmdb", transform, seed=3)
    for epoch in (0, 1):
        folder.set_epoch(epoch)
        lmdb_ds.set_epoch(epoch)
        for i in range(len(folder)):
            a, b = folder[i], lmdb_ds[i]
            assert a["imgl"].shape == (3, 32, 64) and a["disp"].shape == (1, 32, 64)
            assert all(torch.equal(a[k], b[k]) for k in ("imgl", "imgr", "disp"))
            assert b["imgl"].is_contiguous() and b["disp"].is_contiguous()


def test_the_dataset_pickles_without_its_environment(packed: Path) -> None:
    dataset = SceneFlowLMDB(packed / "test_lmdb")
    dataset[0]
    assert dataset._env is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._env is None
    assert np.array_equal(clone[1]["disp"], dataset[1]["disp"])


def test_loader_with_workers_collates_the_recipe_batch(packed: Path) -> None:
    cfg = load_config(None, [
        f"data.train_lmdb={packed / 'train_lmdb'}", "data.crop=[32, 64]", "model.maxdisp=16",
        "model.out_channels=[8, 8, 16, 16, 16, 8]", "model.groups=8",
    ])
    loader = build_dataloader(cfg, "train", train=True, batch_size=2, num_workers=2)
    batches = list(loader)
    held = validation_indices(6, cfg)
    assert held == [held[0]]  # 10% of 6 pairs, at least one, is held out to select best.pt
    assert len(batches) == 2  # the 5 others, drop_last
    batch = batches[0]
    assert set(batch) == {"imgl", "imgr", "disp", "mask", "index"}
    assert batch["imgl"].shape == (2, 3, 32, 64) and batch["imgl"].dtype == torch.float32
    assert batch["disp"].shape == (2, 1, 32, 64)
    assert torch.equal(batch["mask"], (batch["disp"] > 0) & (batch["disp"] < 16))
    assert float(batch["imgl"].abs().max()) <= 1.0
    seen = torch.cat([b["index"] for b in batches]).sort().values
    assert set(seen.tolist()) <= set(range(6)) - set(held) and len(seen) == 4
    val = [int(b["index"]) for b in build_dataloader(cfg, "val", train=False, batch_size=1)]
    assert val == held


def test_the_validation_draw_is_seeded_disjoint_and_bounded(packed: Path) -> None:
    cfg = load_config(None, [f"data.train_lmdb={packed / 'train_lmdb'}", "data.val_count=3"])
    assert validation_indices(100, cfg) == validation_indices(100, cfg) and len(validation_indices(100, cfg)) == 3
    assert validation_indices(100, cfg) != validation_indices(100, cfg.model_copy(update={"seed": 1}))
    assert len(validation_indices(10_000, load_config(None, []))) == 500
    with pytest.raises(DataError, match="data.val_count: 6 would hold out all 6 training pairs"):
        build_dataset(load_config(None, [f"data.train_lmdb={packed / 'train_lmdb'}", "data.val_count=6"]), "train", train=True)


def test_missing_or_incomplete_lmdb_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="LMDB not found.*stereokit pack sceneflow"):
        SceneFlowLMDB(tmp_path / "train_lmdb")
    (tmp_path / "empty_lmdb").mkdir()
    with pytest.raises(DataError, match="no data.mdb"):
        SceneFlowLMDB(tmp_path / "empty_lmdb")
