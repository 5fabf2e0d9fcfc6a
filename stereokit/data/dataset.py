"""Datasets over a packed LMDB or the raw SceneFlow tree, and the DataLoader the recipe uses."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Callable

import lmdb
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from stereokit.config import StereokitConfig
from stereokit.data.lmdb_pack import open_packed, read_packed_sample
from stereokit.data.sceneflow import Sample, load_sample, read_split
from stereokit.data.transforms import build_transform

Transform = Callable[..., dict[str, Any]]


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

    def __init__(self, path: Path, transform: Transform | None = None, seed: int = 0) -> None:
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
        sample = self.raw(index)
        sample = self.transform(sample, self.rng(index)) if self.transform else sample
        return {**sample, "index": index}


class SceneFlowFolder(_Seeded, Dataset):
    """The raw tree read through the split list, for users who skip packing."""

    def __init__(self, data_dir: Path, split: str, transform: Transform | None = None, seed: int = 0) -> None:
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
        "mask": torch.isfinite(disp) & (disp > 0) & (disp < maxdisp),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    }


def build_dataset(cfg: StereokitConfig, split: str, train: bool) -> SceneFlowLMDB | SceneFlowFolder:
    transform = build_transform(cfg.data, train=train)
    if cfg.data.format == "lmdb":
        path = cfg.data.train_lmdb if split == "train" else cfg.data.test_lmdb
        return SceneFlowLMDB(path, transform, seed=cfg.seed)
    return SceneFlowFolder(cfg.data.data_dir, split, transform, seed=cfg.seed)


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
