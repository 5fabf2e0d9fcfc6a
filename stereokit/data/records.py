"""The LMDB record: one stereo pair in one value, without pickle, read at the cost of a copy.

    b"SKR2" | uint32 little-endian header length | JSON header | zero padding | payload
The header gives `shape` [H, W], the source `names`, and each part's [offset, length] in the
payload: `left` and `right` are H*W*3 uint8 BGR pixels (decoded once, at pack time), `disp` is
H*W little-endian float32 (0 = no ground truth), and a benchmark's optional `nonocc` H*W uint8 mask. Parts start on 64-byte boundaries of the payload. Decoding checks every
bound against the value it was given before it makes a view, so a damaged record is refused; the
views it returns point into that value (an LMDB page while the transaction lives), so callers
copy what they keep.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from stereokit.errors import DataError

MAGIC = b"SKR2"
_MAX_HEADER = 1 << 16
_MAX_PIXELS = 1 << 28
_ALIGN = 64


@dataclass(frozen=True)
class Record:
    left: np.ndarray  # HxWx3 uint8 BGR, a view
    right: np.ndarray
    disp: np.ndarray  # HxW float32, a view; 0 where a benchmark has no ground truth
    names: list[str]
    nonocc: np.ndarray | None = None  # HxW bool, a benchmark's non-occluded mask where it has one


def _pad(length: int) -> int:
    return -length % _ALIGN


def encode_record(left: np.ndarray, right: np.ndarray, disp: np.ndarray, names: list[str],
                  nonocc: np.ndarray | None = None) -> bytes:
    disp = np.ascontiguousarray(disp, dtype="<f4")
    if disp.ndim != 2 or left.shape != (*disp.shape, 3) or right.shape != left.shape:
        raise ValueError(f"record parts disagree: left {left.shape}, right {right.shape}, disp {disp.shape}")
    keys = ["left", "right", "disp"]
    parts = [np.ascontiguousarray(left, np.uint8).tobytes(), np.ascontiguousarray(right, np.uint8).tobytes(), disp.tobytes()]
    if nonocc is not None:
        keys.insert(2, "nonocc")  # the float part stays last
        parts.insert(2, np.ascontiguousarray(nonocc, np.uint8).tobytes())
    header: dict[str, object] = {"shape": list(disp.shape), "names": names}
    offset = 0
    for key, blob in zip(keys, parts):
        header[key] = [offset, len(blob)]
        offset += len(blob) + _pad(len(blob))
    head = json.dumps(header, separators=(",", ":")).encode()
    prefix = MAGIC + struct.pack("<I", len(head)) + head
    payload = b"".join(blob + b"\0" * _pad(len(blob)) for blob in parts[:-1]) + parts[-1]
    return prefix + b"\0" * _pad(len(prefix)) + payload


def decode_record(value: bytes | memoryview, name: str) -> Record:
    """Views of one record's images and disparity; refuses (DataError) anything out of bounds."""
    value = memoryview(value)
    if len(value) < 8 or bytes(value[:4]) != MAGIC:
        old = " (an older pack format)" if bytes(value[:3]) == b"SKR" else ""
        raise DataError(f"{name}: not a stereokit LMDB record{old}; re-pack the data.")
    (head_len,) = struct.unpack("<I", value[4:8])
    if head_len > _MAX_HEADER or 8 + head_len > len(value):
        raise DataError(f"{name}: record header is damaged; re-pack the data.")
    try:
        header = json.loads(bytes(value[8 : 8 + head_len]))
        shape = [int(v) for v in header["shape"]]
        spans = {k: (int(header[k][0]), int(header[k][1])) for k in ("left", "right", "disp", "nonocc") if k in header or k != "nonocc"}
        names = [str(n) for n in header.get("names", [])]
    except (ValueError, KeyError, TypeError, IndexError):
        raise DataError(f"{name}: record header is damaged; re-pack the data.") from None
    if len(shape) != 2 or min(shape) <= 0 or shape[0] * shape[1] > _MAX_PIXELS:
        raise DataError(f"{name}: record has an impossible shape {shape}; re-pack the data.")
    start = 8 + head_len + _pad(8 + head_len)
    payload = value[start:]
    pixels = shape[0] * shape[1]
    expected = {"left": pixels * 3, "right": pixels * 3, "disp": pixels * 4, "nonocc": pixels}
    for key, (offset, length) in spans.items():
        if length != expected[key]:
            raise DataError(f"{name}: record part '{key}' has {length} bytes, its shape needs {expected[key]}; re-pack the data.")
        if offset < 0 or offset + length > len(payload):
            raise DataError(f"{name}: record part '{key}' lies outside the record; re-pack the data.")
    h, w = shape

    def view(key: str, dtype: str, dims: tuple[int, ...]) -> np.ndarray:
        offset, length = spans[key]
        return np.frombuffer(payload[offset : offset + length], dtype=dtype).reshape(dims)

    disp = view("disp", "<f4", (h, w))
    nonocc = view("nonocc", "u1", (h, w)).astype(bool) if "nonocc" in spans else None
    return Record(view("left", "u1", (h, w, 3)), view("right", "u1", (h, w, 3)), disp.astype(np.float32, copy=False), names, nonocc)
