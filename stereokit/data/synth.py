"""A SceneFlow-format generator: FlyingThings-like scenes with exact ground truth.

Every surface is a textured layer whose disparity is a plane d(x, y) = a + b x + c y in left-image
coordinates. A right-image pixel x_r shows the layer point x_l with x_l - d(x_l, y) = x_r, which a
plane solves in closed form: x_l = (x_r + a + c y) / (1 - b). Each view samples every layer's
texture at its own x_l (bilinear, so sub-pixel disparities are exact up to interpolation), and the
nearest surface (largest disparity) wins, so occlusion is right in both views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.pfm import write_pfm
from stereokit.data.sceneflow import DISP_DIR, IMAGE_DIR, Sample


@dataclass
class Layer:
    texture: np.ndarray  # [Ht, Wt, 3] float32, indexed by (y, x_l + margin)
    plane: tuple[float, float, float]  # a, b, c of d = a + b x + c y
    shape: tuple[str, np.ndarray] | None  # ("ellipse", params) | ("polygon", vertices); None = everywhere


@dataclass
class Scene:
    left: np.ndarray  # [H, W, 3] uint8 BGR
    right: np.ndarray
    disp: np.ndarray  # [H, W] float32, left view
    nonoccluded: np.ndarray  # [H, W] bool: the left pixel is seen in the right view too


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise: a random grid upsampled with bicubic interpolation."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def make_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Rich multi-scale texture, sometimes stripes (repetitive), sometimes nearly flat (textureless)."""
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    kind = rng.choice(["noise", "noise", "noise", "stripes", "flat"])
    if kind == "flat":
        pattern = 0.05 * _noise(rng, h, w, 32.0)
    elif kind == "stripes":
        period = rng.uniform(6, 16)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        pattern = 0.5 + 0.4 * np.sin(phase) + 0.1 * _noise(rng, h, w, 3.0)
    else:
        pattern = 0.3 * _noise(rng, h, w, 2.5) + 0.3 * _noise(rng, h, w, 8.0) + 0.4 * _noise(rng, h, w, 32.0)
    tint = rng.uniform(0.6, 1.4, size=3).astype(np.float32)
    texture = base[None, None, :] + 90.0 * (pattern[..., None] - 0.5) * tint[None, None, :]
    return np.clip(texture, 0, 255).astype(np.float32)


def _inside(shape: tuple[str, np.ndarray] | None, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if shape is None:
        return np.ones(x.shape, dtype=bool)
    kind, p = shape
    if kind == "ellipse":
        cx, cy, rx, ry, theta = p
        dx, dy = x - cx, y - cy
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    # Convex polygon, vertices counter-clockwise in (x, y) with y down: inside every half-plane.
    inside = np.ones(x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(p, np.roll(p, -1, axis=0)):
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def _random_shape(rng: np.random.Generator, h: int, w: int) -> tuple[str, np.ndarray]:
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    size = rng.uniform(0.1, 0.35) * min(h, w)
    if rng.random() < 0.5:
        return "ellipse", np.array([cx, cy, size, size * rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)])
    n = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = size * rng.uniform(0.6, 1.0, n)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1).astype(np.float32)
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)
    # make the orientation the one _inside expects
    area = np.sum(hull[:, 0] * np.roll(hull[:, 1], -1) - np.roll(hull[:, 0], -1) * hull[:, 1])
    return "polygon", hull if area > 0 else hull[::-1]


def _render(layers: list[Layer], h: int, w: int, margin: int, right: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, disparity and winning-layer index of one view."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    image = np.zeros((h, w, 3), np.float32)
    best = np.full((h, w), -np.inf)
    owner = np.full((h, w), -1, np.int32)
    for index, layer in enumerate(layers):
        a, b, c = layer.plane
        x_l = (xx + a + c * yy) / (1.0 - b) if right else xx
        d = a + b * x_l + c * yy
        win = _inside(layer.shape, x_l, yy) & (d > best)
        if not win.any():
            continue
        colour = cv2.remap(
            layer.texture, (x_l + margin).astype(np.float32), yy.astype(np.float32),
            interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT,
        )
        image[win] = colour[win]
        best[win] = d[win]
        owner[win] = index
    return image, best.astype(np.float32), owner


@dataclass(frozen=True)
class SceneOptions:
    """What a scene holds: how many foreground objects, and where the background plane may lie
    (as fractions of maxdisp)."""

    min_objects: int = 4
    max_objects: int = 10
    background: tuple[float, float] = (0.05, 0.35)


def render_scene(rng: np.random.Generator, height: int, width: int, maxdisp: float,
                 options: SceneOptions = SceneOptions()) -> Scene:
    margin = int(np.ceil(maxdisp)) + 8
    tex_w = width + 2 * margin
    layers: list[Layer] = []
    # Background: a slanted plane, by default in the far part of the range, covering the whole view.
    d0 = rng.uniform(*options.background) * maxdisp
    slope_x = rng.uniform(-0.1, 0.1) * maxdisp / width
    slope_y = rng.uniform(0.0, 0.25) * maxdisp / height
    layers.append(Layer(make_texture(rng, height, tex_w), (d0, slope_x, slope_y), None))
    for _ in range(int(rng.integers(options.min_objects, options.max_objects + 1))):
        d = rng.uniform(0.2, 0.95) * maxdisp
        b = rng.uniform(-0.05, 0.05) * maxdisp / width
        c = rng.uniform(-0.05, 0.05) * maxdisp / height
        layers.append(Layer(make_texture(rng, height, tex_w), (d, b, c), _random_shape(rng, height, width)))
    left, disp, owner_l = _render(layers, height, width, margin, right=False)
    right, _, owner_r = _render(layers, height, width, margin, right=True)
    # A left pixel is seen in the right view when the right pixels around x - d belong to its layer.
    xr = np.arange(width)[None, :] - disp
    x0 = np.clip(np.floor(xr).astype(int), 0, width - 1)
    x1 = np.clip(x0 + 1, 0, width - 1)
    rows = np.arange(height)[:, None]
    nonocc = (xr >= 0) & (owner_r[rows, x0] == owner_l) & (owner_r[rows, x1] == owner_l)
    disp = np.clip(disp, 0.0, None)
    to_u8 = lambda im: np.clip(np.rint(im), 0, 255).astype(np.uint8)  # noqa: E731
    return Scene(to_u8(left), to_u8(right), disp, nonocc)


FRAMES_PER_SEQUENCE = 10


def synth_sample_paths(split: str, index: int) -> Sample:
    """Where pair `index` of a split lives, in FlyingThings3D's layout (frames 6..15 of each sequence)."""
    part = "TRAIN" if split == "train" else "TEST"
    seq, frame = divmod(index, FRAMES_PER_SEQUENCE)
    rel = f"{part}/A/{seq:04d}"
    name = f"{frame + 6:04d}"
    return Sample(
        f"FlyingThings3D/{IMAGE_DIR}/{rel}/left/{name}.png",
        f"FlyingThings3D/{IMAGE_DIR}/{rel}/right/{name}.png",
        f"FlyingThings3D/{DISP_DIR}/{rel}/left/{name}.pfm",
    )


def sample_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """Each pair's own stream: the output does not depend on the number of workers."""
    return np.random.SeedSequence([seed, 0 if split == "train" else 1, index])


def write_synth_sample(out: Path, split: str, index: int, height: int, width: int, maxdisp: float, seed: int,
                       options: SceneOptions = SceneOptions()) -> Sample:
    sample = synth_sample_paths(split, index)
    scene = render_scene(np.random.default_rng(sample_seed(seed, split, index)), height, width, maxdisp, options)
    for rel, image in ((sample.left, scene.left), (sample.right, scene.right)):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), image):
            raise OSError(f"{path}: could not write the image")
    write_pfm(out / sample.disp, scene.disp)
    return sample
