"""The LMDB record: one stereo pair in one value, without pickle.

    b"SKR1" | uint32 little-endian header length | JSON header | payload
The header names each part's offset and length in the payload: `left` and `right` are the encoded
image bytes exactly as read (PNG stays PNG), `disp` is zlib-compressed little-endian float32 of
`disp_shape`. Decoding checks every bound before it allocates, so a damaged record is refused.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from stereokit.errors import DataError

MAGIC = b"SKR1"
_MAX_HEADER = 1 << 16
_MAX_PIXELS = 1 << 28


def encode_record(left: bytes, right: bytes, disp: np.ndarray, names: list[str]) -> bytes:
    disp = np.ascontiguousarray(disp, dtype="<f4")
    parts = {"left": left, "right": right, "disp": zlib.compress(disp.tobytes(), 1)}
    header: dict[str, object] = {"disp_shape": list(disp.shape), "names": names}
    offset = 0
    for key, blob in parts.items():
        header[key] = [offset, len(blob)]
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + b"".join(parts.values())


def decode_record(value: bytes, name: str) -> tuple[bytes, bytes, np.ndarray, list[str]]:
    """-> (left image bytes, right image bytes, disparity [H, W] float32, source names)."""
    if len(value) < 8 or value[:4] != MAGIC:
        raise DataError(f"{name}: not a stereokit LMDB record (bad magic); re-pack the data.")
    (head_len,) = struct.unpack("<I", value[4:8])
    if head_len > _MAX_HEADER or 8 + head_len > len(value):
        raise DataError(f"{name}: record header is damaged; re-pack the data.")
    try:
        header = json.loads(value[8 : 8 + head_len])
        shape = [int(v) for v in header["disp_shape"]]
        spans = {k: (int(header[k][0]), int(header[k][1])) for k in ("left", "right", "disp")}
        names = [str(n) for n in header.get("names", [])]
    except (ValueError, KeyError, TypeError, IndexError):
        raise DataError(f"{name}: record header is damaged; re-pack the data.") from None
    payload = memoryview(value)[8 + head_len :]
    blobs = {}
    for key, (offset, length) in spans.items():
        if offset < 0 or length < 0 or offset + length > len(payload):
            raise DataError(f"{name}: record part '{key}' lies outside the record; re-pack the data.")
        blobs[key] = bytes(payload[offset : offset + length])
    if len(shape) != 2 or min(shape) <= 0 or shape[0] * shape[1] > _MAX_PIXELS:
        raise DataError(f"{name}: record has an impossible disparity shape {shape}; re-pack the data.")
    expected = shape[0] * shape[1] * 4
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(blobs["disp"], expected)
        complete = inflater.eof and not inflater.unconsumed_tail
    except zlib.error:
        raise DataError(f"{name}: record disparity does not decompress; re-pack the data.") from None
    if len(raw) != expected or not complete:
        raise DataError(f"{name}: record disparity has the wrong size; re-pack the data.")
    disp = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    return blobs["left"], blobs["right"], disp, names
