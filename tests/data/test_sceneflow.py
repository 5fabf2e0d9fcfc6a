from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from stereokit.data.sceneflow import list_path, load_sample, parse_list, read_split, samples_from_tree
from stereokit.errors import DataError


def test_lists_are_built_from_the_tree_with_the_conventional_split(synth_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(synth_tree, tree)
    # a Driving sequence in the real layout trains
    driving = tree / "Driving/frames_finalpass/35mm_focallength/scene_forwards/fast"
    for side in ("left", "right"):
        (driving / side).mkdir(parents=True)
        shutil.copy(tree / read_split(tree, "train")[0][0].left, driving / side / "0001.png")
    want_train = read_split(tree, "train")[0]
    want_test = read_split(tree, "test")[0]
    list_path(tree, "train").unlink()
    list_path(tree, "test").unlink()
    train, note = read_split(tree, "train")
    assert note is not None and "built the train list from the tree" in note
    driving_sample = [s for s in train if s.left.startswith("Driving")]
    assert [s.disp for s in driving_sample] == ["Driving/disparity/35mm_focallength/scene_forwards/fast/left/0001.pfm"]
    assert sorted(s for s in train if not s.left.startswith("Driving")) == sorted(want_train)
    assert read_split(tree, "test")[0] == sorted(want_test, key=lambda s: s.left)
    assert set(samples_from_tree(tree)) == {"train", "test"}


def test_load_sample_reads_the_files(synth_tree: Path) -> None:
    sample = read_split(synth_tree, "test")[0][1]
    pair = load_sample(synth_tree, sample)
    assert pair["imgl"].shape == (64, 128, 3) and pair["imgl"].dtype == np.uint8
    assert pair["disp"].shape == (64, 128) and pair["disp"].dtype == np.float32


def test_bad_trees_and_lists(tmp_path: Path, synth_tree: Path) -> None:
    with pytest.raises(DataError, match="not a SceneFlow tree"):
        read_split(tmp_path, "train")
    with pytest.raises(DataError, match="data directory not found"):
        read_split(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="line 2 has 2 paths"):
        parse_list("a b c\na b\n", "list.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    list_path(empty, "train").write_text("\n")
    with pytest.raises(DataError, match="list file is empty"):
        read_split(empty, "train")
