from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from stereokit.data.lmdb_pack import META_KEY, PROGRESS_KEY, open_packed, pack_lmdb, partial_path, record_key
from stereokit.data.pfm import encode_pfm, read_pfm
from stereokit.data.records import decode_record
from stereokit.data.sceneflow import list_path, read_split
from stereokit.errors import DataError, StereokitError
from stereokit.services.pack import run_pack


def pack(src: Path, out: Path, split: str = "train", **kw) -> object:
    return run_pack(src, split, out, show_progress=False, **kw)


def records(path: Path) -> dict[bytes, bytes]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = dict(txn.cursor())
    env.close()
    return items


def test_pack_stores_decoded_pixels_and_exact_disparity(synth_tree: Path, tmp_path: Path) -> None:
    result = pack(synth_tree, tmp_path, "test")
    assert result.complete and result.count == 3 and result.target == tmp_path / "test_lmdb"
    env, meta = open_packed(result.target)
    samples, _ = read_split(synth_tree, "test")
    assert meta["count"] == len(samples) and meta["shapes"] == [[64, 128]]
    assert meta["source_list"].endswith("SceneFlow_finalpass_test.txt")
    with env.begin() as txn:
        assert txn.stat()["entries"] == len(samples) + 2  # records, metadata, list digest
        for i, sample in enumerate(samples):
            record = decode_record(txn.get(record_key(i)), "r")
            assert np.array_equal(record.left, cv2.imread(str(synth_tree / sample.left)))  # decoded once, at pack time
            assert np.array_equal(record.right, cv2.imread(str(synth_tree / sample.right)))
            assert record.disp.tobytes() == read_pfm(synth_tree / sample.disp).tobytes()
            assert record.names[0] == sample.left
    env.close()
    assert not partial_path(result.target).exists()


def test_two_workers_write_the_same_records(synth_tree: Path, tmp_path: Path) -> None:
    one = pack(synth_tree, tmp_path / "one", num_workers=1)
    two = pack(synth_tree, tmp_path / "two", num_workers=2)
    assert records(one.target) == records(two.target)


def test_existing_target_needs_force(synth_tree: Path, tmp_path: Path) -> None:
    first = pack(synth_tree, tmp_path, "test")
    before = records(first.target)
    with pytest.raises(StereokitError, match="already exists; pass --force"):
        pack(synth_tree, tmp_path, "test")
    assert records(first.target) == before
    again = pack(synth_tree, tmp_path, "test", force=True)
    assert records(again.target) == before


def test_an_interrupted_pack_is_never_complete_and_resumes(synth_tree: Path, tmp_path: Path) -> None:
    stopped = pack(synth_tree, tmp_path, limit=2)
    assert not stopped.complete and stopped.count == 2
    target = tmp_path / "train_lmdb"
    assert not target.exists() and partial_path(target).exists()
    with pytest.raises(DataError, match="interrupted pack is beside it"):
        open_packed(target)
    env = lmdb.open(str(partial_path(target)), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(META_KEY) is None
    env.close()
    resumed = pack(synth_tree, tmp_path)
    assert resumed.complete and resumed.resumed_from == 2 and resumed.written == 4
    assert records(target) == records(pack(synth_tree, tmp_path / "fresh").target)


def test_an_interrupted_pack_of_another_list_is_refused(synth_tree: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_tree, src)
    pack(src, tmp_path, limit=1)
    lines = list_path(src, "train").read_text().splitlines()
    list_path(src, "train").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="interrupted pack of another list"):
        pack(src, tmp_path)
    assert pack(src, tmp_path, force=True).count == len(lines) - 1


def test_map_grows_and_a_tiny_limit_is_a_clear_error(synth_tree: Path, tmp_path: Path) -> None:
    samples, _ = read_split(synth_tree, "train")
    grown = pack_lmdb(synth_tree, samples, tmp_path / "grown", "list", initial_map_size=64 << 10)
    env, _ = open_packed(grown.target)
    assert env.info()["map_size"] > 64 << 10
    env.close()
    with pytest.raises(DataError, match="full at its map size limit of 0 MiB"):
        pack_lmdb(synth_tree, samples, tmp_path / "tiny", "list", max_map_size=128 << 10)
    assert not (tmp_path / "tiny").exists()  # only the .partial, which never opens as a pack
    with pytest.raises(DataError, match="interrupted pack is beside it"):
        open_packed(tmp_path / "tiny")


@pytest.mark.parametrize("damage", ["missing", "size", "png", "pfm"])
def test_bad_source_files_are_named(synth_tree: Path, tmp_path: Path, damage: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_tree, src)
    sample = read_split(src, "train")[0][3]
    if damage == "missing":
        (src / sample.right).unlink()
        bad = sample.right
    elif damage == "size":
        (src / sample.disp).write_bytes(encode_pfm(np.zeros((32, 128), np.float32)))
        bad = sample.disp
    elif damage == "png":
        (src / sample.left).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        bad = sample.left
    else:
        data = (src / sample.disp).read_bytes()
        (src / sample.disp).write_bytes(data[: len(data) // 2])
        bad = sample.disp
    with pytest.raises(DataError) as err:
        pack(src, tmp_path / "out", num_workers=2)
    assert Path(bad).name in str(err.value)
    assert not (tmp_path / "out" / "train_lmdb").exists()


def test_bad_flags(synth_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(StereokitError, match="--pack-type"):
        pack(synth_tree, tmp_path, pack_type="tfrecord")
    with pytest.raises(StereokitError, match="--split-name"):
        pack(synth_tree, tmp_path, "val")


def test_damaged_records_are_refused() -> None:
    from stereokit.data.records import encode_record

    image = np.zeros((4, 5, 3), np.uint8)
    value = encode_record(image, image + 1, np.ones((4, 5), np.float32), ["a", "b", "c"])
    record = decode_record(value, "ok")
    assert record.disp.shape == (4, 5) and int(record.right[0, 0, 0]) == 1
    for bad in (b"XXXX" + value[4:], value[:20], value[:-3], value[:8] + b"[" + value[9:]):
        with pytest.raises(DataError):
            decode_record(bad, "bad")
    with pytest.raises(DataError, match="older pack format"):
        decode_record(b"SKR1" + value[4:], "v1")


def test_old_format_pack_is_refused_with_its_version(synth_tree: Path, tmp_path: Path) -> None:
    result = pack(synth_tree, tmp_path, "test")
    env = lmdb.open(str(result.target))
    with env.begin(write=True) as txn:
        meta = json.loads(txn.get(META_KEY))
        txn.put(META_KEY, json.dumps({**meta, "schema_version": 1}).encode())
    env.close()
    before = records(result.target)
    with pytest.raises(DataError, match=r"pack format version 1 is older than this stereokit's 2; re-pack it with 'stereokit pack sceneflow --force'"):
        open_packed(result.target)
    assert records(result.target) == before


def test_interrupted_pack_of_an_older_format_is_not_resumed(synth_tree: Path, tmp_path: Path) -> None:
    first = pack(synth_tree, tmp_path, limit=2)
    assert not first.complete
    env = lmdb.open(str(first.target))
    with env.begin(write=True) as txn:
        txn.put(PROGRESS_KEY, json.dumps({**json.loads(txn.get(PROGRESS_KEY)), "schema_version": 1}).encode())
    env.close()
    with pytest.raises(DataError, match="interrupted pack of an older pack format"):
        pack(synth_tree, tmp_path)
    again = pack(synth_tree, tmp_path, force=True)
    assert again.complete and again.resumed_from == 0
