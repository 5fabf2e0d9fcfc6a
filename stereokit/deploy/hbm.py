"""The compiled-model container (.hbm): one self-contained file.

Layout (little-endian):
    magic        8 bytes  b"SKHBM\\x00\\x00\\x01"
    version      uint32   container format version
    manifest_len uint64
    model_len    uint64
    sha256       32 bytes of manifest + model
    manifest     JSON (inputs, preprocessing, scales, target, source hashes, perf summary)
    model        the integer ONNX graph
Loading checks the magic, the version, every length against the file size, and the checksum
before anything is parsed, so a truncated or altered file is refused.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stereokit.errors import StereokitError

MAGIC = b"SKHBM\x00\x00\x01"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQQ32s")
MAX_MANIFEST = 16 << 20


@dataclass
class CompiledModel:
    manifest: dict[str, Any]
    model: bytes


def pack_hbm(manifest: dict[str, Any], model: bytes) -> bytes:
    meta = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(meta + model).digest()
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(meta), len(model), digest) + meta + model


def unpack_hbm(data: bytes, name: str = "<bytes>") -> CompiledModel:
    if len(data) < _HEADER.size:
        raise StereokitError(f"{name}: too short to be a compiled model (.hbm); re-run 'stereokit compile'.")
    magic, version, meta_len, model_len, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StereokitError(f"{name}: not a stereokit compiled model (bad magic).")
    if version > FORMAT_VERSION:
        raise StereokitError(f"{name}: .hbm format version {version} is newer than this stereokit reads ({FORMAT_VERSION}); upgrade stereokit.")
    if version < 1:
        raise StereokitError(f"{name}: .hbm format version {version} is not valid.")
    if meta_len > MAX_MANIFEST or _HEADER.size + meta_len + model_len != len(data):
        raise StereokitError(f"{name}: the .hbm is truncated or has trailing bytes (sizes do not add up); re-run 'stereokit compile'.")
    body = data[_HEADER.size :]
    if hashlib.sha256(body).digest() != digest:
        raise StereokitError(f"{name}: the .hbm checksum does not match (the file was altered or damaged); re-run 'stereokit compile'.")
    try:
        manifest = json.loads(body[:meta_len])
    except ValueError:
        raise StereokitError(f"{name}: the .hbm manifest is not valid JSON.") from None
    if not isinstance(manifest, dict):
        raise StereokitError(f"{name}: the .hbm manifest is not an object.")
    return CompiledModel(manifest, bytes(body[meta_len:]))


def load_hbm(path: Path) -> CompiledModel:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StereokitError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__}).") from None
    return unpack_hbm(data, str(path))
