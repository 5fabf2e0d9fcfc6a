"""The SceneFlow tree and its split lists.

    SceneFlow/{Driving,FlyingThings3D,Monkaa}/frames_finalpass/.../left/NNNN.png  (and right/)
    SceneFlow/{Driving,FlyingThings3D,Monkaa}/disparity/.../left/NNNN.pfm
    SceneFlow/SceneFlow_finalpass_{train,test}.txt   one "left.png right.png disp.pfm" a line

Paths in the lists are relative to the data dir. The conventional split: FlyingThings3D TEST is the
test split, everything else trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from stereokit.data.pfm import read_pfm
from stereokit.errors import DataError

Split = Literal["train", "test"]
SUBSETS = ("Driving", "FlyingThings3D", "Monkaa")
IMAGE_DIR = "frames_finalpass"
DISP_DIR = "disparity"


@dataclass(frozen=True, order=True)
class Sample:
    left: str
    right: str
    disp: str

    def line(self) -> str:
        return f"{self.left} {self.right} {self.disp}"


def list_path(data_dir: Path, split: Split) -> Path:
    return Path(data_dir) / f"SceneFlow_finalpass_{split}.txt"


def is_sceneflow_tree(data_dir: Path) -> bool:
    data_dir = Path(data_dir)
    return any((data_dir / s / IMAGE_DIR).is_dir() for s in SUBSETS) or any(
        list_path(data_dir, split).is_file() for split in ("train", "test")
    )


def parse_list(text: str, name: str) -> list[Sample]:
    samples = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise DataError(f"{name}: line {number} has {len(parts)} paths, expected 'left.png right.png disp.pfm'.")
        samples.append(Sample(*parts))
    return samples


def samples_from_tree(data_dir: Path) -> dict[str, list[Sample]]:
    """Every left image with its right image and disparity, split the conventional way."""
    data_dir = Path(data_dir)
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for subset in SUBSETS:
        root = data_dir / subset / IMAGE_DIR
        if not root.is_dir():
            continue
        for left in sorted(root.rglob("left/*.png")):
            rel = left.relative_to(data_dir)
            parts = rel.parts
            right = Path(*parts[:-2], "right", parts[-1])
            disp = Path(parts[0], DISP_DIR, *parts[2:-1], Path(parts[-1]).with_suffix(".pfm").name)
            split = "test" if subset == "FlyingThings3D" and parts[2] == "TEST" else "train"
            splits[split].append(Sample(rel.as_posix(), right.as_posix(), disp.as_posix()))
    return splits


def read_split(data_dir: Path, split: Split) -> tuple[list[Sample], str | None]:
    """The split's samples, and a note when the list was built from the tree (no list file)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found.")
    path = list_path(data_dir, split)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read the list file ({exc.__class__.__name__}).") from None
        samples = parse_list(text, str(path))
        if not samples:
            raise DataError(f"{path}: the list file is empty.")
        return samples, None
    if not is_sceneflow_tree(data_dir):
        raise DataError(
            f"{data_dir}: not a SceneFlow tree (no {'/'.join(SUBSETS)}/{IMAGE_DIR} folders and no "
            f"{path.name}); point --src-data-dir at the folder that holds them."
        )
    samples = samples_from_tree(data_dir)[split]
    if not samples:
        raise DataError(f"{data_dir}: the SceneFlow tree has no {split} samples (and no {path.name}).")
    note = f"{path.name} not found: built the {split} list from the tree ({len(samples)} pairs; FlyingThings3D TEST is the test split)."
    return samples, note


def write_split_list(data_dir: Path, split: Split, samples: list[Sample]) -> Path:
    path = list_path(data_dir, split)
    path.write_text("".join(s.line() + "\n" for s in samples), encoding="utf-8")
    return path


def read_image_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: listed in the split but missing; fix the list or the tree.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__}).") from None


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Encoded image bytes -> HxWx3 uint8 BGR (OpenCV's order)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DataError(f"{name}: not a readable image; re-export or re-download it.")
    return image


def check_shapes(sample: Sample, left: np.ndarray, right: np.ndarray, disp: np.ndarray) -> None:
    if left.shape != right.shape:
        raise DataError(f"{sample.right}: size {right.shape[1]}x{right.shape[0]} differs from the left image's {left.shape[1]}x{left.shape[0]}.")
    if disp.shape[:2] != left.shape[:2]:
        raise DataError(f"{sample.disp}: disparity size {disp.shape[1]}x{disp.shape[0]} differs from the image's {left.shape[1]}x{left.shape[0]}.")


def disparity_channel(disp: np.ndarray) -> np.ndarray:
    """SceneFlow disparities are grey PFMs; a colour PFM keeps its first channel."""
    return np.ascontiguousarray(disp[..., 0] if disp.ndim == 3 else disp, dtype=np.float32)


@dataclass
class PairFiles:
    """One pair as read from the tree: the encoded image bytes and the decoded, checked arrays."""

    left_bytes: bytes
    right_bytes: bytes
    left: np.ndarray  # HxWx3 uint8 BGR
    right: np.ndarray
    disp: np.ndarray  # HxW float32


def read_pair(data_dir: Path, sample: Sample) -> PairFiles:
    data_dir = Path(data_dir)
    left_path, right_path, disp_path = (data_dir / p for p in (sample.left, sample.right, sample.disp))
    left_bytes, right_bytes = read_image_bytes(left_path), read_image_bytes(right_path)
    left, right = decode_image(left_bytes, str(left_path)), decode_image(right_bytes, str(right_path))
    if not disp_path.exists():
        raise DataError(f"{disp_path}: listed in the split but missing; fix the list or the tree.")
    disp = disparity_channel(read_pfm(disp_path))
    check_shapes(sample, left, right, disp)
    return PairFiles(left_bytes, right_bytes, left, right, disp)


def load_sample(data_dir: Path, sample: Sample) -> dict[str, np.ndarray]:
    """Read one pair from the tree: BGR uint8 images and float32 disparity [H, W]."""
    pair = read_pair(data_dir, sample)
    return {"imgl": pair.left, "imgr": pair.right, "disp": pair.disp}
