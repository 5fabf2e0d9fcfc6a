"""Packing a SceneFlow split into LMDB, resumably, and never leaving a partial pack looking whole.

A pack is written into `<target>.partial/` and renamed to `<target>/` only after its metadata
record is in. A `.partial` of the same list is resumed; of another list, refused (or, with
--force, started over). The map grows by doubling on MapFullError up to `max_map_size`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import lmdb
import numpy as np

from stereokit import __version__
from stereokit.data.records import decode_record, encode_record
from stereokit.data.sceneflow import Sample, read_pair
from stereokit.errors import DataError

META_KEY = b"__meta__"
PROGRESS_KEY = b"__progress__"
# 2: records hold decoded pixels and raw float32 disparity (1 held PNG bytes and zlib'd floats).
LMDB_SCHEMA_VERSION = 2
INITIAL_MAP_SIZE = 64 << 20
BATCH_RECORDS = 32


def record_key(index: int) -> bytes:
    return b"%08d" % index


def list_digest(samples: list[Sample]) -> str:
    return hashlib.sha256("".join(s.line() + "\n" for s in samples).encode()).hexdigest()


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


@dataclass
class PackStats:
    target: Path
    count: int
    written: int
    resumed_from: int
    bytes: int
    shapes: list[list[int]] = field(default_factory=list)


def encode_sample(data_dir: Path, sample: Sample) -> tuple[bytes, tuple[int, int]]:
    """Read, decode and check one pair once, so that reading it back later costs a copy."""
    pair = read_pair(data_dir, sample)
    record = encode_record(pair.left, pair.right, pair.disp, [sample.left, sample.right, sample.disp])
    return record, pair.disp.shape


def read_meta(env: lmdb.Environment, key: bytes = META_KEY) -> dict | None:
    with env.begin() as txn:
        value = txn.get(key)
    if value is None:
        return None
    try:
        meta = json.loads(value)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def open_lmdb(path: Path, **options: Any) -> lmdb.Environment:
    """lmdb.open, then a check that data.mdb holds every page the environment says it uses.

    A data.mdb cut short (a copy that stopped, a full disk) is memory-mapped like a whole one, and
    the first read past its end kills the process with SIGBUS; so the length is checked first.
    """
    try:
        env = lmdb.open(str(path), subdir=True, readahead=False, **options)
    except lmdb.Error as exc:
        raise DataError(f"{path}: cannot open the LMDB ({exc}); re-pack it.") from None
    data = Path(path) / "data.mdb"
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    have = data.stat().st_size if data.is_file() else 0
    if have < need:
        env.close()
        raise DataError(f"{data}: truncated ({have:,} bytes, its pages need {need:,}); re-pack it (--force).")
    return env


def _open_for_write(path: Path, map_size: int) -> lmdb.Environment:
    path.mkdir(parents=True, exist_ok=True)
    return open_lmdb(path, map_size=map_size, meminit=False)


def _put_batch(env: lmdb.Environment, items: list[tuple[bytes, bytes]], max_map_size: int, where: Path) -> None:
    """Write items in one transaction, doubling the map on MapFullError up to max_map_size."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            current = env.info()["map_size"]
            if current >= max_map_size:
                raise DataError(
                    f"{where}: the LMDB is full at its map size limit of {max_map_size >> 20} MiB; "
                    "free disk space or raise --max-map-size, then re-run to resume."
                ) from None
            env.set_mapsize(min(current * 2, max_map_size))
        except lmdb.Error as exc:
            if "No space" in str(exc) or "ENOSPC" in str(exc):
                raise DataError(f"{where}: the disk is full; free space, then re-run to resume.") from None
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DataError(f"{where}: the disk is full; free space, then re-run to resume.") from None
            raise


def pack_lmdb(
    data_dir: Path,
    samples: list[Sample],
    target: Path,
    source_list: str,
    num_workers: int = 1,
    force: bool = False,
    max_map_size: int = 1 << 40,
    on_progress: Callable[[int], None] | None = None,
    limit: int | None = None,
    initial_map_size: int = INITIAL_MAP_SIZE,
) -> PackStats:
    """Pack a SceneFlow list into `target`. `limit` stops after that many new records (a test hook for
    interrupting a pack without killing it); the pack stays `.partial` then."""
    return pack_records(len(samples), partial(encode_listed, Path(data_dir), samples), list_digest(samples), target,
                        {"source_list": source_list, "source_format": "sceneflow"}, num_workers, force, max_map_size,
                        on_progress, limit, initial_map_size)


def encode_listed(data_dir: Path, samples: list[Sample], index: int) -> tuple[bytes, tuple[int, int]]:
    return encode_sample(data_dir, samples[index])


def _clear_stale_partial(work: Path, digest: str, force: bool) -> None:
    """An interrupted pack of another list or an older format is refused, or with --force removed;
    one of the same list stays, to be resumed."""
    if not work.exists():
        return
    try:
        env = open_lmdb(work, readonly=True, lock=False) if (work / "data.mdb").exists() else None
    except DataError:
        if not force:
            raise
        env = None
    progress = read_meta(env, PROGRESS_KEY) if env is not None else None
    if env is not None:
        env.close()
    stale = progress is None or progress.get("list_sha256") != digest
    older = progress is not None and progress.get("schema_version") != LMDB_SCHEMA_VERSION
    if stale or older:
        if not force:
            what = "an older pack format" if older else "another list"
            raise DataError(f"{work}: an interrupted pack of {what} is here; pass --force to start over.")
        shutil.rmtree(work)


def _encoded(encode: Callable[[int], tuple[bytes, tuple[int, int]]], pending: list[int],
             num_workers: int) -> Iterator[tuple[bytes, tuple[int, int]]]:
    if num_workers <= 1:
        yield from map(encode, pending)
        return
    # not multiprocessing.Pool: its terminate() on an exception can hang for good (CPython
    # issues 78178, 96995; seen once here, a bad file refused and the pack never returning)
    pool = ProcessPoolExecutor(num_workers)
    try:
        yield from pool.map(encode, pending, chunksize=4)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_pending(env: lmdb.Environment, pending: list[int], encoded: Iterator[tuple[bytes, tuple[int, int]]],
                   max_map_size: int, work: Path, on_progress: Callable[[int], None] | None) -> tuple[int, set[tuple[int, int]]]:
    """Records in transactions of BATCH_RECORDS; how many were written and their shapes."""
    shapes: set[tuple[int, int]] = set()
    written = 0
    batch: list[tuple[bytes, bytes]] = []
    for index, (record, shape) in zip(pending, encoded):
        batch.append((record_key(index), record))
        shapes.add(tuple(shape))
        if len(batch) >= BATCH_RECORDS:
            _put_batch(env, batch, max_map_size, work)
            written += len(batch)
            if on_progress:
                on_progress(len(batch))
            batch = []
    if batch:
        _put_batch(env, batch, max_map_size, work)
        written += len(batch)
        if on_progress:
            on_progress(len(batch))
    return written, shapes


def pack_records(
    count: int,
    encode: Callable[[int], tuple[bytes, tuple[int, int]]],
    digest: str,
    target: Path,
    meta_extra: dict[str, Any],
    num_workers: int = 1,
    force: bool = False,
    max_map_size: int = 1 << 40,
    on_progress: Callable[[int], None] | None = None,
    limit: int | None = None,
    initial_map_size: int = INITIAL_MAP_SIZE,
) -> PackStats:
    """Records 0..count-1 made by `encode(index)` into `target`, resumably; `digest` names what is packed
    (a resumed .partial of another digest is refused), `meta_extra` goes into the metadata record."""
    target = Path(target)
    if target.exists() and not force:
        raise DataError(f"{target}: already exists; pass --force to replace it.")
    work = partial_path(target)
    _clear_stale_partial(work, digest, force)
    env = _open_for_write(work, min(initial_map_size, max_map_size))
    try:
        _put_batch(env, [(PROGRESS_KEY, json.dumps({"list_sha256": digest, "schema_version": LMDB_SCHEMA_VERSION}).encode())], max_map_size, work)
        with env.begin() as txn:
            done = {i for i in range(count) if txn.get(record_key(i)) is not None}
        pending = [i for i in range(count) if i not in done]
        if limit is not None:
            pending = pending[:limit]
        if on_progress and done:
            on_progress(len(done))
        written, shapes = _write_pending(env, pending, _encoded(encode, pending, num_workers), max_map_size, work, on_progress)
        have = len(done) + written
        if have < count:
            return PackStats(work, have, written, len(done), _size(work), sorted(list(s) for s in shapes))
        with env.begin() as txn:
            for i in done:  # shapes of records an earlier, interrupted run wrote
                value = txn.get(record_key(i))
                shapes.add(tuple(decode_record(value, str(work)).disp.shape))
        meta = {
            "count": count,
            **meta_extra,
            "list_sha256": digest,
            "shapes": sorted(list(s) for s in shapes),
            "stereokit_version": __version__,
            "schema_version": LMDB_SCHEMA_VERSION,
        }
        _put_batch(env, [(META_KEY, json.dumps(meta).encode())], max_map_size, work)
        env.sync(True)
    finally:
        env.close()
    _swap_into_place(work, target)
    return PackStats(target, count, written, len(done), _size(target), meta["shapes"])


def _swap_into_place(work: Path, target: Path) -> None:
    old = target.with_name(target.name + ".old")
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    work.rename(target)
    if old.exists():
        shutil.rmtree(old)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).glob("*.mdb"))


# LMDB allows one environment per file per process: every reader in a process shares it.
_OPEN: dict[tuple[int, str], lmdb.Environment] = {}


def _cached_env(path: Path) -> lmdb.Environment | None:
    pid = os.getpid()
    for key in [k for k in _OPEN if k[0] != pid]:
        # Inherited through fork: the parent's handle must not be used here; py-lmdb would still
        # call its file "already open", so close the child's copy and open afresh.
        _OPEN.pop(key).close()
    env = _OPEN.get((pid, str(path.resolve())))
    if env is None:
        return None
    try:
        env.info()
    except lmdb.Error:
        return None
    return env


def open_packed(path: Path) -> tuple[lmdb.Environment, dict]:
    """Open a finished pack read-only without a lock file (safe for many reader processes)."""
    path = Path(path)
    if not path.exists():
        hint = " (an interrupted pack is beside it; re-run pack to resume)" if partial_path(path).exists() else ""
        raise DataError(f"{path}: LMDB not found{hint}; run 'stereokit pack sceneflow' first.")
    if not (path / "data.mdb").is_file():
        raise DataError(f"{path}: not an LMDB directory (no data.mdb); run 'stereokit pack sceneflow'.")
    env = _cached_env(path)
    if env is None:
        env = open_lmdb(path, readonly=True, lock=False, max_readers=512)
        _OPEN[(os.getpid(), str(path.resolve()))] = env
    meta = read_meta(env)
    if meta is None or not isinstance(meta.get("count"), int):
        env.close()
        raise DataError(f"{path}: the LMDB has no metadata record, so it is incomplete; re-pack it.")
    version = meta.get("schema_version")
    if version != LMDB_SCHEMA_VERSION:
        env.close()
        age = "older than" if isinstance(version, int) and version < LMDB_SCHEMA_VERSION else "not"
        raise DataError(
            f"{path}: LMDB pack format version {version} is {age} this stereokit's {LMDB_SCHEMA_VERSION}; "
            "re-pack it with 'stereokit pack sceneflow --force'."
        )
    if meta["count"] == 0:
        env.close()
        raise DataError(f"{path}: the LMDB is empty; re-pack it from a split with samples.")
    return env, meta


def read_packed_sample(
    env: lmdb.Environment, index: int, where: str, window: Callable[[dict], dict] | None = None
) -> dict[str, np.ndarray]:
    """One pair copied out of the map. `window` picks views (a crop) before the copy, so a training
    crop copies only its own pixels."""
    with env.begin(buffers=True) as txn:
        value = txn.get(record_key(index))
        if value is None:
            raise DataError(f"{where}: record {index} is missing; re-pack the data.")
        record = decode_record(value, f"{where}[{index}]")
        sample = {"imgl": record.left, "imgr": record.right, "disp": record.disp}
        if record.nonocc is not None:
            sample["nonocc"] = record.nonocc
        if window is not None:
            sample = window(sample)
        return {key: np.array(view) for key, view in sample.items()}  # copies before the txn ends
