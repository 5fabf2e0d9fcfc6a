from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from stereokit.data.pfm import decode_pfm, encode_pfm, read_pfm, write_pfm
from stereokit.errors import DataError


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
@pytest.mark.parametrize("little_endian", [True, False])
def test_round_trip_is_bit_exact(tmp_path: Path, shape: tuple[int, ...], little_endian: bool) -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=shape).astype(np.float32)
    array.flat[0] = np.inf
    path = tmp_path / "x.pfm"
    write_pfm(path, array, little_endian=little_endian)
    back = read_pfm(path)
    assert back.dtype == np.float32 and back.shape == shape
    assert back.tobytes() == array.tobytes()


def _independent_pfm(array: np.ndarray, big_endian: bool) -> bytes:
    """Written straight from the format spec with struct, not with our writer."""
    h, w = array.shape[:2]
    header = ("PF" if array.ndim == 3 else "Pf") + f"\n{w} {h}\n" + ("1.0" if big_endian else "-1.0") + "\n"
    fmt = ">f" if big_endian else "<f"
    body = b"".join(struct.pack(fmt, float(v)) for row in array[::-1] for v in np.ravel(row))
    return header.encode() + body


@pytest.mark.parametrize("big_endian", [True, False])
def test_reads_an_independently_written_file(tmp_path: Path, big_endian: bool) -> None:
    array = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3) / 7
    (tmp_path / "c.pfm").write_bytes(_independent_pfm(array, big_endian))
    assert np.array_equal(read_pfm(tmp_path / "c.pfm"), array)
    grey = np.array([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]], dtype=np.float32)  # row 0 is the top
    (tmp_path / "g.pfm").write_bytes(_independent_pfm(grey, big_endian))
    assert np.array_equal(read_pfm(tmp_path / "g.pfm"), grey)


def test_rows_are_stored_bottom_to_top() -> None:
    grey = np.array([[1, 2], [3, 4]], dtype=np.float32)
    body = encode_pfm(grey)[len(b"Pf\n2 2\n-1.0\n") :]
    assert np.frombuffer(body, "<f4").tolist() == [3, 4, 1, 2]


def test_truncated_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    data = encode_pfm(np.ones((8, 8), np.float32))
    (tmp_path / "t.pfm").write_bytes(data[:-5])
    with pytest.raises(DataError, match=r"t\.pfm: PFM is truncated"):
        read_pfm(tmp_path / "t.pfm")
    (tmp_path / "h.pfm").write_bytes(b"P6\n8 8\n255\n" + b"\0" * 192)
    with pytest.raises(DataError, match=r"h\.pfm: not a PFM file"):
        read_pfm(tmp_path / "h.pfm")
    with pytest.raises(DataError, match="impossible size"):
        decode_pfm(b"Pf\n99999999 99999999\n-1.0\n", "huge")
    with pytest.raises(DataError, match="cannot read"):
        read_pfm(tmp_path / "missing.pfm")
