"""Property-based fuzzing of every reader of bytes a user hands us: PFM, LMDB records, .hbm,
config files. Each either returns a valid value or raises the project's own error; never another
exception, never a hang, never an allocation sized by a number read from the file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stereokit.config import StereokitConfig, load_config
from stereokit.data.pfm import decode_pfm, encode_pfm
from stereokit.data.records import decode_record, encode_record
from stereokit.deploy.hbm import _HEADER, MAGIC, pack_hbm, unpack_hbm
from stereokit.deploy.runtime import open_compiled
from stereokit.errors import StereokitError

_SCRATCH = Path(tempfile.mkdtemp(prefix="stereokit-fuzz-"))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID_PFM = encode_pfm(np.arange(12, dtype=np.float32).reshape(3, 4))
VALID_RECORD = encode_record(np.full((3, 4, 3), 7, np.uint8), np.zeros((3, 4, 3), np.uint8), np.ones((3, 4), np.float32), ["l", "r", "d"])
VALID_HBM = pack_hbm({"inputs": {"imgl": [1, 3, 4, 4]}}, b"\x08\x01" * 20)


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    if cut is not None:
        buf = buf[: cut % (len(buf) + 1)]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6)
CUTS = st.one_of(st.none(), st.integers(0, 10_000))


@FUZZ
@given(st.binary(max_size=512))
def test_pfm_random_bytes(data: bytes) -> None:
    try:
        array = decode_pfm(data, "fuzz.pfm")
    except StereokitError:
        return
    assert array.dtype == np.float32 and array.ndim in (2, 3)


@FUZZ
@given(EDITS, CUTS)
def test_pfm_mutated(edits: list[tuple[int, int]], cut: int | None) -> None:
    try:
        array = decode_pfm(mutate(VALID_PFM, edits, cut), "fuzz.pfm")
    except StereokitError:
        return
    assert array.size * 4 <= len(VALID_PFM)  # never larger than the bytes it came from


@FUZZ
@given(st.integers(1, 2**40), st.integers(1, 2**40))
def test_pfm_huge_header_is_refused_without_allocating(width: int, height: int) -> None:
    data = b"Pf\n%d %d\n-1.0\n" % (width, height) + b"\0" * 64
    try:
        array = decode_pfm(data, "huge.pfm")
    except StereokitError:
        return
    assert array.size <= 16


@FUZZ
@given(EDITS, CUTS)
def test_record_mutated(edits: list[tuple[int, int]], cut: int | None) -> None:
    try:
        record = decode_record(mutate(VALID_RECORD, edits, cut), "fuzz")
    except StereokitError:
        return
    assert record.disp.dtype == np.float32 and record.disp.ndim == 2
    assert record.left.shape == record.right.shape == (*record.disp.shape, 3)


@FUZZ
@given(st.binary(max_size=256))
def test_record_random_bytes(data: bytes) -> None:
    value = b"SKR2" + data
    try:
        record = decode_record(value, "fuzz")
    except StereokitError:
        return
    # what decodes is consistent with the bytes it came from: parts inside the record, a 2-D float map
    assert record.left.nbytes + record.right.nbytes + record.disp.nbytes < len(value)
    assert record.disp.dtype == np.float32 and record.disp.ndim == 2 and record.disp.size >= 1
    assert all(isinstance(n, str) for n in record.names)


@FUZZ
@given(st.dictionaries(st.sampled_from(["shape", "left", "right", "disp", "names"]),
                       st.one_of(st.integers(-2**40, 2**40), st.lists(st.integers(-2**40, 2**40), max_size=3), st.text(max_size=4)),
                       max_size=5))
def test_record_with_crafted_header_never_allocates_from_it(header: dict) -> None:
    """A header that parses as JSON but lies about shapes and offsets is refused, never trusted."""
    import json
    import struct

    head = json.dumps(header).encode()
    value = b"SKR2" + struct.pack("<I", len(head)) + head + b"\0" * 32
    try:
        record = decode_record(value, "fuzz")
    except StereokitError:
        return
    assert record.disp.nbytes + record.left.nbytes + record.right.nbytes <= 32  # views of what is there, nothing more


@FUZZ
@given(EDITS, CUTS)
def test_hbm_mutated(edits: list[tuple[int, int]], cut: int | None) -> None:
    data = mutate(VALID_HBM, edits, cut)
    try:
        compiled = unpack_hbm(data, "fuzz.hbm")
    except StereokitError:
        return
    assert data == VALID_HBM or compiled.manifest == unpack_hbm(VALID_HBM).manifest


@FUZZ
@given(st.binary(max_size=256))
def test_hbm_random_bytes(data: bytes) -> None:
    """Random bytes after the magic are always refused: sizes or the checksum give them away."""
    with pytest.raises(StereokitError):
        unpack_hbm(b"SKHBM\x00\x00\x01" + data, "fuzz.hbm")


HEADER_SIZE = _HEADER.size


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_hbm_body_mutated_behind_a_valid_header(edits: list[tuple[int, int]]) -> None:
    """The header (magic, version, sizes) stays valid; any changed byte after it fails the checksum."""
    body = bytearray(VALID_HBM[HEADER_SIZE:])
    for pos, value in edits:
        body[pos % len(body)] = value
    data = VALID_HBM[:HEADER_SIZE] + bytes(body)
    if data == VALID_HBM:
        return
    with pytest.raises(StereokitError, match="checksum"):
        unpack_hbm(data, "fuzz.hbm")


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_hbm_with_a_valid_checksum_over_a_crafted_manifest(manifest: bytes, model: bytes) -> None:
    """A file whose sizes and checksum are right but whose manifest is anything: a dict or refused,
    and opening it as a model is refused with our own error, never a crash."""
    import hashlib
    import struct

    data = struct.pack("<8sIQQ32s", MAGIC, 1, len(manifest), len(model), hashlib.sha256(manifest + model).digest()) + manifest + model
    try:
        compiled = unpack_hbm(data, "fuzz.hbm")
    except StereokitError:
        return
    assert isinstance(compiled.manifest, dict) and compiled.model == model
    path = _SCRATCH / "crafted.hbm"
    path.write_bytes(data)
    with pytest.raises(StereokitError):
        open_compiled(path)


YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
SECTIONS = st.sampled_from(["model", "data", "train", "quant", "deploy", "seed", "device", "bogus"])


@FUZZ
@given(st.dictionaries(SECTIONS, YAML_VALUES, max_size=4))
def test_config_from_random_trees(tree: dict) -> None:
    path = _SCRATCH / "fuzz.yaml"
    path.write_text(yaml.safe_dump(tree))
    try:
        cfg = load_config(path)
    except StereokitError:
        return
    assert isinstance(cfg, StereokitConfig)


@FUZZ
@given(st.binary(max_size=300))
def test_config_from_random_bytes(data: bytes) -> None:
    """Any bytes: the reference config (an empty or comment-only file), a valid config, or our error."""
    path = _SCRATCH / "fuzz.yaml"
    path.write_bytes(data)
    try:
        cfg = load_config(path)
    except StereokitError as exc:
        assert str(path) in str(exc)  # the sentence names the file
        return
    assert isinstance(cfg, StereokitConfig)
    assert cfg == load_config(None) or yaml.safe_load(data) not in (None, {})
