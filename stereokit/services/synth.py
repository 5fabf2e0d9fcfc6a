"""`stereokit synth`: write a generated dataset in SceneFlow's tree layout, with its split lists."""

from __future__ import annotations

import multiprocessing
import shutil
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from stereokit.data.sceneflow import Sample, write_split_list
from stereokit.data.synth import SceneOptions, write_synth_sample
from stereokit.errors import StereokitError
from stereokit.paths import folder_to_write
from stereokit.progress import progress_bar


class SynthResult(BaseModel):
    out: Path
    num_train: int
    num_test: int
    height: int
    width: int
    maxdisp: float
    seed: int
    lists: list[Path]


def _write_one(args: tuple[str, int], out: Path, height: int, width: int, maxdisp: float, seed: int,
               options: SceneOptions) -> Sample:
    split, index = args
    return write_synth_sample(out, split, index, height, width, maxdisp, seed, options)


def run_synth(
    out: Path,
    num_train: int,
    num_test: int,
    height: int = 256,
    width: int = 512,
    maxdisp: float = 64,
    seed: int = 0,
    workers: int = 1,
    force: bool = False,
    show_progress: bool = True,
    options: SceneOptions = SceneOptions(),
) -> SynthResult:
    out = folder_to_write(Path(out), "--out")
    if workers < 1:
        raise StereokitError(f"--workers: {workers} must be at least 1.")
    if num_train < 0 or num_test < 0 or num_train + num_test == 0:
        raise StereokitError("--num-train/--num-test: ask for at least one pair, and no negative counts.")
    if height < 32 or width < 32:
        raise StereokitError(f"--height/--width: {height}x{width} is too small; use at least 32x32.")
    problem = options.problem(height, width, maxdisp)
    if problem:
        raise StereokitError(problem[0].upper() + problem[1:])
    if out.exists() and any(out.iterdir()):
        if not force:
            raise StereokitError(f"{out}: already exists and is not empty; pass --force to replace it.")
        shutil.rmtree(out)
    jobs = [("train", i) for i in range(num_train)] + [("test", i) for i in range(num_test)]
    work = partial(_write_one, out=out, height=height, width=width, maxdisp=maxdisp, seed=seed, options=options)
    samples: dict[str, list[Sample]] = {"train": [], "test": []}
    with progress_bar("synth", len(jobs), enabled=show_progress) as advance:
        if workers <= 1:
            results = map(work, jobs)
            for (split, _), sample in zip(jobs, results):
                samples[split].append(sample)
                advance()
        else:
            with multiprocessing.get_context().Pool(workers) as pool:
                for (split, _), sample in zip(jobs, pool.imap(work, jobs, chunksize=2)):
                    samples[split].append(sample)
                    advance()
    lists = [write_split_list(out, split, samples[split]) for split in ("train", "test") if samples[split]]
    return SynthResult(
        out=out, num_train=num_train, num_test=num_test, height=height, width=width,
        maxdisp=maxdisp, seed=seed, lists=lists,
    )
