"""rig calibrate and rectify through the real CLI: bad input is one sentence and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.camera import boards
from tests.cli import assert_all_refused, run


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shots")
    boards.render_pairs(root / "ok", poses=8, seed=3)
    return root


def test_rig_calibrate_and_rectify_through_the_cli(shots: Path, tmp_path: Path) -> None:
    result = run("rig", "calibrate", str(shots / "ok"), "--board", "9x6", "--square", "0.025", "--out", str(tmp_path / "rig.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert data["baseline"] == pytest.approx(0.06, rel=0.02) and data["rectified_dy_mean"] < 0.3 and data["unit"] == "m"
    out = tmp_path / "rect"
    result = run("rectify", "--rig", str(tmp_path / "rig.yaml"), "--pairs", str(shots / "ok"), "--save-path", str(out))
    assert result.returncode == 0, result.stderr
    assert len(list((out / "left").glob("*.png"))) == 8 and len(list((out / "right").glob("*.png"))) == 8
    result = run("rectify", "--rig", str(tmp_path / "rig.yaml"), "--imgl", str(shots / "ok" / "left" / "00.png"),
                 "--imgr", str(shots / "ok" / "right" / "00.png"), "--save-path", str(tmp_path / "one"), "--crop")
    assert result.returncode == 0, result.stderr
    assert "cropped" in result.stdout
    cropped = cv2.imread(str(tmp_path / "one" / "left.png"))
    assert cropped.shape[0] <= boards.H and cropped.shape[1] <= boards.W


def test_bad_rig_input_is_one_sentence_and_writes_nothing(shots: Path, tmp_path: Path) -> None:
    few = tmp_path / "few"
    (few / "left").mkdir(parents=True)
    (few / "right").mkdir()
    for i in range(3):
        shutil.copy(shots / "ok" / "left" / f"{i:02d}.png", few / "left" / f"{i:02d}.png")
        shutil.copy(shots / "ok" / "right" / f"{i:02d}.png", few / "right" / f"{i:02d}.png")
    blank = tmp_path / "blank"
    (blank / "left").mkdir(parents=True)
    (blank / "right").mkdir()
    for side in ("left", "right"):
        cv2.imwrite(str(blank / side / "a.png"), np.full((60, 80, 3), 90, np.uint8))
    odd = tmp_path / "odd"
    shutil.copytree(few, odd)
    (odd / "right" / "02.png").rename(odd / "right" / "07.png")
    sizes = tmp_path / "sizes"
    shutil.copytree(few, sizes)
    cv2.imwrite(str(sizes / "left" / "02.png"), np.zeros((100, 100, 3), np.uint8))
    cv2.imwrite(str(sizes / "right" / "02.png"), np.zeros((100, 100, 3), np.uint8))
    (tmp_path / "notrig.yaml").write_text("just: text\n")
    (tmp_path / "oldrig.yaml").write_text("schema_version: 0\nK1: [[1]]\n")
    rig = tmp_path / "rig.yaml"
    assert run("rig", "calibrate", str(shots / "ok"), "--board", "9x6", "--square", "0.025", "--out", str(rig)).returncode == 0
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 120, 3), np.uint8))
    out = str(tmp_path / "new.yaml")
    cases = [
        (("rig", "calibrate", str(blank), "--board", "9x6", "--square", "0.025", "--out", out), "no 9x6 board found"),
        (("rig", "calibrate", str(few), "--board", "9x6", "--square", "0.025", "--out", out), "fewer than the 6"),
        (("rig", "calibrate", str(odd), "--board", "9x6", "--square", "0.025", "--out", out), "has no image of the same name"),
        (("rig", "calibrate", str(sizes), "--board", "9x6", "--square", "0.025", "--out", out), "differs from the first pair"),
        (("rig", "calibrate", str(few), "--board", "9x2", "--square", "0.025", "--out", out), "both above 2"),
        (("rig", "calibrate", str(few), "--board", "nine", "--square", "0.025", "--out", out), "COLUMNSxROWS"),
        (("rig", "calibrate", str(few), "--board", "9x6", "--square", "-1", "--out", out), "--square -1.0"),
        (("rig", "calibrate", str(shots / "ok"), "--board", "9x6", "--square", "0.025", "--out", str(rig)), "pass --force"),
        (("rectify", "--rig", str(tmp_path / "notrig.yaml"), "--imgl", str(small), "--imgr", str(small)), "not a rig file"),
        (("rectify", "--rig", str(tmp_path / "oldrig.yaml"), "--imgl", str(small), "--imgr", str(small)), "rig schema version 0"),
        (("rectify", "--rig", str(rig), "--imgl", str(small), "--imgr", str(small), "--save-path", str(tmp_path / "r")), "is not the rig's image size"),
        (("infer", "--model", str(tmp_path), "--rig", str(rig), "--imgl", str(small), "--imgr", str(small),
          "--save-path", str(tmp_path / "i")), "is not the rig's image size"),
    ]
    assert_all_refused(tmp_path, cases)
