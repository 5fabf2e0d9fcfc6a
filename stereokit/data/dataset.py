"""Datasets over a packed LMDB or the raw SceneFlow tree, and the DataLoader the recipe uses."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from stereokit.config import StereokitConfig
from stereokit.errors import DataError
from stereokit.data.lmdb_pack import open_packed, read_packed_sample
from stereokit.data.sceneflow import Sample, load_sample, read_split
from stereokit.data.transforms import Pipeline, build_transform
from stereokit.data.validity import valid_mask


class _Seeded:
    """Crops drawn from a generator seeded per (epoch, index): the same run draws the same crops."""

    seed: int = 0
    epoch: int = 0

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class SceneFlowLMDB(_Seeded, Dataset):
    """A packed split. The environment opens lazily in each process (read-only, no lock), so the
    dataset pickles cleanly into DataLoader workers and never shares a handle across a fork."""

    def __init__(self, path: Path, transform: Pipeline | None = None, seed: int = 0) -> None:
        self.path = Path(path)
        _, self.meta = open_packed(self.path)  # fail early, in the parent, with a clear sentence
        self.transform = transform
        self.seed = seed
        self._env: lmdb.Environment | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.meta["count"])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_env"], state["_pid"] = None, None
        return state

    def _environment(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            self._env, _ = open_packed(self.path)
            self._pid = os.getpid()
        return self._env

    def raw(self, index: int) -> dict[str, np.ndarray]:
        return read_packed_sample(self._environment(), index, str(self.path))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.transform is None:
            return {**self.raw(index), "index": index}
        rng = self.rng(index)
        window = read_packed_sample(self._environment(), index, str(self.path), lambda s: self.transform.window(s, rng))
        return {**self.transform.finish(window), "index": index}


class SceneFlowFolder(_Seeded, Dataset):
    """The raw tree read through the split list, for users who skip packing."""

    def __init__(self, data_dir: Path, split: str, transform: Pipeline | None = None, seed: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.samples: list[Sample]
        self.samples, self.note = read_split(self.data_dir, split)  # type: ignore[arg-type]
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        return load_sample(self.data_dir, self.samples[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.raw(index)
        sample = self.transform(sample, self.rng(index)) if self.transform else sample
        return {**sample, "index": index}


def collate_stereo(batch: list[dict[str, Any]], maxdisp: int) -> dict[str, torch.Tensor]:
    """Stack into {"imgl", "imgr", "disp", "mask", "index"}; mask = 0 < gt < maxdisp."""
    disp = torch.stack([b["disp"] for b in batch])
    return {
        "imgl": torch.stack([b["imgl"] for b in batch]),
        "imgr": torch.stack([b["imgr"] for b in batch]),
        "disp": disp,
        "mask": valid_mask(disp, maxdisp),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    }


class HeldOut(Dataset):
    """A fixed subset of a split (the training pairs without the validation draw, or the draw).

    Items keep the index of the underlying split, so metrics and crops stay tied to the pair.
    """

    def __init__(self, base: SceneFlowLMDB | SceneFlowFolder, indices: list[int], what: str) -> None:
        self.base, self.indices, self.what = base, indices, what

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.base[self.indices[i]]

    def raw(self, i: int) -> dict[str, np.ndarray]:
        return self.base.raw(self.indices[i])

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    @property
    def where(self) -> Path:
        return dataset_path(self.base)


def dataset_path(dataset: Any) -> Path:
    if isinstance(dataset, HeldOut):
        return dataset.where
    return dataset.path if isinstance(dataset, SceneFlowLMDB) else dataset.data_dir


def validation_indices(total: int, cfg: StereokitConfig) -> list[int]:
    """The training pairs held out for model selection: a draw seeded by cfg.seed, so every stage
    and every process holds out the same ones."""
    count = cfg.data.val_count if cfg.data.val_count is not None else max(1, min(500, total // 10))
    if count >= total:
        raise DataError(f"data.val_count: {count} would hold out all {total} training pairs; use fewer (at most {total - 1}).")
    order = np.random.default_rng([cfg.seed, 0x5EED]).permutation(total)
    return sorted(int(i) for i in order[:count])


def _split_dataset(cfg: StereokitConfig, split: str, transform: Pipeline) -> SceneFlowLMDB | SceneFlowFolder:
    if cfg.data.format == "lmdb":
        path = {"train": cfg.data.train_lmdb, "test": cfg.data.test_lmdb, "val": cfg.data.val_lmdb}[split]
        return SceneFlowLMDB(path, transform, seed=cfg.seed)
    return SceneFlowFolder(cfg.data.data_dir, split, transform, seed=cfg.seed)


def build_dataset(cfg: StereokitConfig, split: str, train: bool) -> Dataset:
    """split: "train" (without the held-out pairs), "val" (the held-out pairs, or data.val_lmdb) or
    "test" (for reports only: training and model selection never read it)."""
    transform = build_transform(cfg.data, train=train)
    if split == "test" or (split == "val" and cfg.data.val_lmdb is not None):
        if split == "val" and cfg.data.format != "lmdb":
            raise DataError("data.val_lmdb: a packed validation split needs data.format=lmdb.")
        return _split_dataset(cfg, split, transform)
    base = _split_dataset(cfg, "train", transform)
    if cfg.data.val_lmdb is not None:
        return base
    held = validation_indices(len(base), cfg)
    if split == "val":
        return HeldOut(base, held, "val")
    keep = sorted(set(range(len(base))) - set(held))
    return HeldOut(base, keep, "train")


def check_crop_fits(dataset: Dataset, crop: list[int] | tuple[int, int]) -> None:
    """Refuse a training crop larger than the data before a stage writes anything."""
    h, w = dataset.raw(0)["disp"].shape[:2]
    where = dataset_path(dataset)
    if h < crop[0] or w < crop[1]:
        raise DataError(f"{where}: its samples are {w}x{h}, smaller than the training crop {crop[1]}x{crop[0]}; lower data.crop.")


class ResumableSampler(DistributedSampler):
    """DistributedSampler (one replica when not distributed) whose next pass can start mid-epoch.

    The order depends only on (seed, epoch), so a resumed run sees the batches it had not seen yet.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.start = 0

    def skip_next(self, samples: int) -> None:
        """The next pass starts after `samples` of this rank's indices (once)."""
        self.start = samples

    def __iter__(self):  # type: ignore[override]
        indices = list(super().__iter__())[self.start :]
        self.start = 0
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples - self.start


def build_dataloader(
    cfg: StereokitConfig, split: str, train: bool, batch_size: int, num_workers: int | None = None
) -> DataLoader:
    """Each rank sees its share through the sampler; order and crops depend on (seed, epoch) only."""
    dataset = build_dataset(cfg, split, train)
    sampler = ResumableSampler(dataset, shuffle=train, seed=cfg.seed)
    workers = cfg.data.num_workers if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=partial(collate_stereo, maxdisp=cfg.model.maxdisp),
        drop_last=train,
        pin_memory=torch.cuda.is_available(),
    )


class UnlabeledPairs(_Seeded, Dataset):
    """A folder of rectified pairs without ground truth (stereokit.data.pairs), as seeded crops with a
    zero disparity: what calibrate --pairs observes, so PTQ statistics come from the camera's images."""

    def __init__(self, folder: Path, cfg: StereokitConfig, seed: int = 0) -> None:
        from stereokit.data.pairs import find_pairs, read_pair
        from stereokit.data.transforms import BgrToYuv444, Normalize, RandomCrop, ToTensor

        self.path = Path(folder)
        self.images = [read_pair(l, r) for _, l, r in find_pairs(self.path)]
        h = min(min(a.shape[0] for a, _ in self.images) // 32 * 32, cfg.data.crop[0])
        w = min(min(a.shape[1] for a, _ in self.images) // 32 * 32, cfg.data.crop[1])
        if h < 32 or w < 32:
            raise DataError(f"{self.path}: its pairs are smaller than 32x32; use larger images.")
        self.transform = Pipeline(RandomCrop(h, w), [BgrToYuv444(cfg.data.rgb_input), ToTensor(), Normalize(cfg.data.mean, cfg.data.std)])
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        left, right = self.images[index]
        return {"imgl": left, "imgr": right, "disp": np.zeros(left.shape[:2], np.float32)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.transform(self.raw(index), self.rng(index)), "index": index}


def pairs_loader(folder: Path, cfg: StereokitConfig, batch_size: int) -> DataLoader:
    dataset = UnlabeledPairs(folder, cfg, cfg.seed)
    return DataLoader(dataset, batch_size=min(batch_size, len(dataset)), sampler=ResumableSampler(dataset, True, cfg.seed),
                      num_workers=0, collate_fn=partial(collate_stereo, maxdisp=cfg.model.maxdisp), drop_last=True)
