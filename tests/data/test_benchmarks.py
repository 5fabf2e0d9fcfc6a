"""Each benchmark reader on folders written in its exact format: the written truth comes back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stereokit.data.benchmark import read_benchmark
from stereokit.data.pfm import write_pfm
from stereokit.errors import DataError
from tests.data import benchmark_folders as bf


def test_middlebury_2014_reads_disparity_masks_and_calibration(tmp_path: Path) -> None:
    truth = bf.write_middlebury_2014(tmp_path / "MiddEval3" / "trainingQ" / "Toy", 1)
    bf.write_middlebury_2014(tmp_path / "MiddEval3" / "trainingQ" / "Other", 2, gt_name="disp0.pfm")
    samples = read_benchmark("middlebury", tmp_path / "MiddEval3")
    assert [s.name for s in samples] == ["Other", "Toy"]
    toy = samples[1]
    assert np.array_equal(toy.valid, truth["valid"]) and np.array_equal(toy.nonocc, truth["nonocc"])
    assert np.array_equal(toy.disp[toy.valid], truth["disp"][truth["valid"]])
    assert (toy.disp[~toy.valid] == 0).all()
    assert toy.right.shape == toy.left.shape == (64, 128, 3)
    assert toy.focal_px == bf.FOCAL and toy.baseline_m == pytest.approx(bf.BASELINE_MM / 1000) and toy.doffs == bf.DOFFS
    # one scene's own folder reads too
    assert len(read_benchmark("middlebury", tmp_path / "MiddEval3" / "trainingQ" / "Toy")) == 1


def test_middlebury_2005_scales_the_stored_disparity_by_the_size(tmp_path: Path) -> None:
    truth = bf.write_middlebury_2005(tmp_path / "Art")
    [sample] = read_benchmark("middlebury", tmp_path / "Art")
    assert np.array_equal(sample.valid, truth["valid"])
    assert np.allclose(sample.disp[sample.valid], truth["disp"][truth["valid"]])
    assert sample.doffs == pytest.approx(80.0) and sample.focal_px == pytest.approx(3740 / 3) and sample.nonocc is None


@pytest.mark.parametrize("year", [2012, 2015])
def test_kitti_reads_sparse_uint16_disparity_and_calibration(tmp_path: Path, year: int) -> None:
    truths = bf.write_kitti(tmp_path / f"kitti{year}", year, frames=2, seed=3)
    samples = read_benchmark(f"kitti{year}", tmp_path / f"kitti{year}")
    assert [s.name for s in samples] == ["000000_10", "000001_10"]  # frame _11 has no ground truth
    for sample, truth in zip(samples, truths):
        assert np.array_equal(sample.valid, truth["valid"]) and 0.2 < sample.valid.mean() < 0.4
        assert np.array_equal(sample.nonocc, truth["nonocc"])
        assert np.array_equal(sample.disp[sample.valid], truth["disp"][truth["valid"]]) and (sample.disp[~sample.valid] == 0).all()
        assert sample.focal_px == bf.FOCAL and sample.baseline_m == pytest.approx(0.54)


def test_eth3d_reads_the_two_trees(tmp_path: Path) -> None:
    truths = bf.write_eth3d(tmp_path / "eth3d")
    samples = read_benchmark("eth3d", tmp_path / "eth3d")
    assert len(samples) == 2
    for sample, truth in zip(samples, truths):
        assert np.array_equal(sample.disp[sample.valid], truth["disp"][truth["valid"]])
        assert np.array_equal(sample.nonocc, truth["nonocc"])


def test_bad_benchmark_folders_get_one_sentence_naming_the_file(tmp_path: Path) -> None:
    bf.write_middlebury_2014(tmp_path / "m", 1)
    (tmp_path / "m" / "calib.txt").unlink()
    with pytest.raises(DataError, match=r"calib.txt: missing"):
        read_benchmark("middlebury", tmp_path / "m")
    bf.write_middlebury_2014(tmp_path / "p", 1)
    write_pfm(tmp_path / "p" / "disp0GT.pfm", np.zeros((10, 10), np.float32))
    with pytest.raises(DataError, match=r"disp0GT.pfm: 10x10 differs from the image's 128x64"):
        read_benchmark("middlebury", tmp_path / "p")
    bf.write_kitti(tmp_path / "k", 2015, frames=1)
    cv2.imwrite(str(tmp_path / "k" / "training" / "disp_occ_0" / "000000_10.png"), np.zeros((64, 128), np.uint8))
    with pytest.raises(DataError, match="must be 16-bit"):
        read_benchmark("kitti2015", tmp_path / "k")
    bf.write_kitti(tmp_path / "k2", 2012, frames=1)
    (tmp_path / "k2" / "training" / "colored_1" / "000000_10.png").unlink()
    with pytest.raises(DataError, match=r"colored_1/000000_10.png: missing \(the right image\)"):
        read_benchmark("kitti2012", tmp_path / "k2")
    bf.write_eth3d(tmp_path / "e", 1)
    (tmp_path / "e" / "two_view_training_gt" / "scene_0" / "disp0GT.pfm").unlink()
    with pytest.raises(DataError, match="disp0.pfm: missing"):
        read_benchmark("eth3d", tmp_path / "e")
    with pytest.raises(DataError, match="not a known benchmark; known: middlebury, kitti2012"):
        read_benchmark("kitty", tmp_path)
