"""A SceneFlow-format generator: FlyingThings-like scenes with exact ground truth.

Every surface is a textured layer whose disparity is a smooth function of left-image coordinates,
d(x, y) = a + b x + c y + kx (x - cx)^2 + ky (y - cy)^2 (objects are planes or, with object_curvature, bulges; the
background may curve). A right-image pixel x_r shows the layer point x_l with x_l - d(x_l, y) = x_r:
a plane solves that in closed form, x_l = (x_r + a + c y) / (1 - b); a curved surface by fixed-point
iteration x_l <- x_r + d(x_l, y), a contraction because |dd/dx| < 1/2. Each view samples every layer's
texture at its own x_l (bilinear, so sub-pixel disparities are exact up to interpolation), and the
nearest surface (largest disparity) wins, so occlusion is right in both views.

The pictures are then seen through two cameras that differ as real ones do (gain, offset, gamma,
vignetting, blur, sensor noise, each drawn per view); the ground truth is geometric and unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from stereokit.data.pfm import write_pfm
from stereokit.data.photos import photo_texture
from stereokit.data.sceneflow import DISP_DIR, IMAGE_DIR, Sample

# The textures drawn for an object that is neither weak nor repetitive, repeated by weight.
RICH_TEXTURES = ("pink", "pink", "dead_leaves", "dead_leaves", "binary", "gradient", "noise")


@dataclass
class Layer:
    texture: np.ndarray  # [Ht, Wt, 3] float32, indexed by (y, x_l + margin)
    surface: tuple[float, ...]  # a, b, c, kx, ky, cx, cy
    shape: tuple[str, np.ndarray] | None  # ("ellipse", params) | ("polygon", vertices); None = everywhere


@dataclass(frozen=True)
class Camera:
    """One view's photometric response: vignetting and blur of the radiance, then
    v = gain * x^gamma + offset, then sensor noise (see `photograph`)."""

    gain: float = 1.0
    offset: float = 0.0  # grey levels
    gamma: float = 1.0
    vignette: float = 0.0  # brightness lost in the corners, as a fraction
    blur: float = 0.0  # Gaussian sigma in pixels; 0 = none
    noise: float = 0.0  # std of additive noise in grey levels


@dataclass
class Scene:
    left: np.ndarray  # [H, W, 3] uint8 BGR
    right: np.ndarray
    disp: np.ndarray  # [H, W] float32, left view
    nonoccluded: np.ndarray  # [H, W] bool: the left pixel is seen in the right view too
    cameras: tuple[Camera, Camera]


@dataclass(frozen=True)
class SceneOptions:
    """Every knob of a scene. Ranges are (low, high); disparities are fractions of maxdisp, sizes
    fractions of the shorter image side. The defaults are the hardest scenes a model still learns from."""

    min_objects: int = 10
    max_objects: int = 30
    object_size: tuple[float, float] = (0.03, 0.6)
    thin_share: float = 0.15  # bars and poles among the objects
    foreground: tuple[float, float] = (0.1, 0.95)
    background: tuple[float, float] = (0.02, 0.35)
    slant: float = 0.1  # largest disparity change across the frame of one surface, as a fraction of maxdisp
    curvature: float = 0.1  # the background's, likewise
    weak_share: float = 0.1  # objects with almost no texture
    repetitive_share: float = 0.1  # objects with stripes (ambiguous matches)
    gain: float = 0.1  # each view's gain in 1 +- gain
    offset: float = 8.0  # grey levels, +-
    gamma: float = 0.1  # each view's gamma in [1/(1+g), 1+g]
    vignette: float = 0.25
    blur: float = 0.7  # largest sigma (px)
    noise: float = 2.5  # largest noise std (grey levels)
    photo_share: float = 0.0  # surfaces textured with crops of real photographs (stereokit.data.photos)
    object_curvature: float = 0.0  # objects with a curved surface, their largest bulge as a fraction of maxdisp

    def problem(self, height: int, width: int, maxdisp: float) -> str | None:
        """The first option out of range, as a sentence naming it; None when all are usable."""
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if any(not np.isfinite(v) or v < 0 for v in values):
                return f"scene option {f.name}={list(values) if isinstance(value, tuple) else value} must not be negative."
        if self.min_objects > self.max_objects:
            return f"scene options min_objects={self.min_objects} > max_objects={self.max_objects}: an empty range."
        for name in ("object_size", "foreground", "background"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                return f"scene option {name}=[{lo}, {hi}] is an empty range (low must be below high)."
        for name in ("foreground", "background"):
            lo, hi = getattr(self, name)
            if hi > 1:
                return f"scene option {name}=[{lo}, {hi}] goes past maxdisp (its values are fractions of maxdisp, at most 1)."
        if self.object_size[1] > 1:
            return f"scene option object_size={list(self.object_size)}: sizes are fractions of the shorter side, at most 1."
        for name in ("thin_share", "weak_share", "repetitive_share", "vignette", "photo_share"):
            if getattr(self, name) > 1:
                return f"scene option {name}={getattr(self, name)} is a fraction, at most 1."
        if self.weak_share + self.repetitive_share > 1:
            return "scene options weak_share + repetitive_share must not exceed 1."
        if self.slant + max(self.curvature, self.object_curvature) > 0.5 or self.slant > 0.5:
            return f"scene options slant={self.slant} and curvature={self.curvature}: together at most 0.5 of maxdisp across the frame."
        if self.gain >= 1 or self.gamma >= 1:
            return "scene options gain and gamma must be below 1 (they are relative changes)."
        if not 0 < maxdisp < width:
            return f"maxdisp {maxdisp} must be positive and smaller than the width {width}: the disparity range does not fit."
        if height < 16 or width < 16:
            return f"{height}x{width} is too small for a scene."
        return None

    @classmethod
    def parse(cls, items: list[str]) -> "SceneOptions":
        """`name=value` pairs (values as YAML: 0.2, [0.1, 0.5]) over the defaults; an unknown name raises ValueError."""
        import yaml

        known = {f.name: f for f in fields(cls)}
        values: dict[str, object] = {}
        for item in items:
            name, sep, raw = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ValueError(f"--scene {item!r}: expected name=value with a name among {', '.join(known)}.")
            value = yaml.safe_load(raw)
            default = getattr(cls(), name)
            if isinstance(default, tuple):
                if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
                    raise ValueError(f"--scene {item!r}: {name} takes a range [low, high].")
                value = (float(value[0]), float(value[1]))
            elif isinstance(default, int):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"--scene {item!r}: {name} takes a whole number.")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"--scene {item!r}: {name} takes a number.")
            else:
                value = float(value)
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Value noise: a random grid upsampled with bicubic interpolation, in about [0, 1]."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _pink(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise with a 1/f^alpha amplitude spectrum (natural images have alpha near 1), scaled to [0, 1]."""
    alpha = rng.uniform(0.7, 1.2)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f**alpha
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    lo, hi = np.percentile(field, (1, 99))
    return np.clip((field - lo) / max(hi - lo, 1e-6), 0, 1)


def _palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """n colours around a random hue family, in [0, 255]."""
    base = rng.uniform(30, 225, size=3)
    spread = rng.uniform(20, 110)
    return np.clip(base[None, :] + rng.normal(0, spread, size=(n, 3)), 0, 255).astype(np.float32)


def make_texture(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A [h, w, 3] float32 texture in [0, 255]: photo, pink, dead_leaves, stripes, binary, gradient, noise or weak."""
    if kind == "photo":
        return photo_texture(rng, h, w)
    if kind == "dead_leaves":
        # Overlapping discs with a power-law size distribution: the scale-invariant occlusion
        # statistics of natural images, with sharp edges at every scale.
        colours = _palette(rng, 256)
        image = np.empty((h, w, 3), np.float32)
        image[:] = colours[0]
        r_min, r_max = 1.5, max(3.0, 0.25 * min(h, w))
        count = int(np.clip(6 * h * w / (r_min * r_max * 40), 50, 4000))
        u = rng.random(count)
        radii = r_min * r_max / (r_max - u * (r_max - r_min))  # density ~ 1/r^2 between r_min and r_max
        centres = rng.uniform((0, 0), (w, h), size=(count, 2))
        order = np.argsort(-radii)  # big first, so small leaves stay visible
        for i in order:
            colour = tuple(float(c) for c in colours[rng.integers(0, len(colours))])
            cv2.circle(image, (int(centres[i, 0]), int(centres[i, 1])), int(round(radii[i])), colour, -1, cv2.LINE_8)
        return image
    if kind == "binary":
        cell = int(rng.integers(1, 5))
        bits = rng.random((h // cell + 1, w // cell + 1)) < 0.5
        bits = np.kron(bits, np.ones((cell, cell), bool))[:h, :w]
        a, b = _palette(rng, 2)
        return np.where(bits[..., None], a, b).astype(np.float32)
    if kind == "stripes":
        period = rng.uniform(3.0, 40.0)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        wave = np.sin(phase)
        pattern = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * wave
        a, b = _palette(rng, 2)
        return (a * pattern[..., None] + b * (1 - pattern[..., None]) + rng.normal(0, 2, (h, w, 1))).astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(h, w)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        a, b = _palette(rng, 2)
        detail = 30 * (_smooth_noise(rng, h, w, 2.0) - 0.5)
        return (a * t[..., None] + b * (1 - t[..., None]) + detail[..., None]).astype(np.float32)
    if kind == "weak":
        colour = _palette(rng, 1)[0]
        return (colour[None, None, :] + 6 * (_smooth_noise(rng, h, w, 24.0)[..., None] - 0.5)).astype(np.float32)
    if kind == "noise":
        pattern = 0.3 * _smooth_noise(rng, h, w, 2.5) + 0.3 * _smooth_noise(rng, h, w, 8.0) + 0.4 * _smooth_noise(rng, h, w, 32.0)
        a, b = _palette(rng, 2)
        return (a * pattern[..., None] + b * (1 - pattern[..., None])).astype(np.float32)
    # pink: luminance and two weaker chroma fields, each with a 1/f spectrum
    luma = _pink(rng, h, w)
    base = _palette(rng, 1)[0]
    contrast = rng.uniform(80, 200)
    image = base[None, None, :] + contrast * (luma[..., None] - 0.5)
    for channel in rng.choice(3, size=2, replace=False):
        image[..., channel] += 0.35 * contrast * (_pink(rng, h, w) - 0.5)
    return image.astype(np.float32)


def _texture_kind(rng: np.random.Generator, options: SceneOptions) -> str:
    u = rng.random()
    if u < options.weak_share:
        return "weak"
    if u < options.weak_share + options.repetitive_share:
        return "stripes"
    if options.photo_share and rng.random() < options.photo_share:
        return "photo"
    return str(rng.choice(RICH_TEXTURES))


# ---------------------------------------------------------------- geometry


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


def _oriented(points: np.ndarray) -> np.ndarray:
    area = np.sum(points[:, 0] * np.roll(points[:, 1], -1) - np.roll(points[:, 0], -1) * points[:, 1])
    return points if area > 0 else points[::-1]


def _random_shape(rng: np.random.Generator, h: int, w: int, options: SceneOptions) -> tuple[str, np.ndarray]:
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    side = min(h, w)
    lo, hi = options.object_size
    # half log-uniform (as many small objects as large per octave), half uniform (the frame fills)
    if rng.random() < 0.5:
        size = np.exp(rng.uniform(np.log(max(lo * side, 1.0)), np.log(max(hi * side, 1.5)))) / 2
    else:
        size = rng.uniform(lo, hi) * side / 2
    if rng.random() < options.thin_share:
        # a bar or pole: a long thin rectangle, 1-4% of the side wide
        length = rng.uniform(0.3, 0.9) * max(h, w)
        width = max(1.5, rng.uniform(0.01, 0.04) * side)
        angle = rng.uniform(0, np.pi) if rng.random() < 0.5 else np.pi / 2 + rng.normal(0, 0.1)
        u = np.array([np.cos(angle), np.sin(angle)])
        v = np.array([-u[1], u[0]])
        corners = [np.array([cx, cy]) + su * length / 2 * u + sv * width / 2 * v for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        return "polygon", _oriented(np.array(corners, np.float64))
    if rng.random() < 0.45:
        return "ellipse", np.array([cx, cy, size, size * rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)])
    n = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = size * rng.uniform(0.5, 1.0, n)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1).astype(np.float32)
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return "ellipse", np.array([cx, cy, size, size, 0.0])
    return "polygon", _oriented(hull)


def _disparity(surface: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a, b, c, kx, ky, cx, cy = surface
    return a + b * x + c * y + kx * (x - cx) ** 2 + ky * (y - cy) ** 2


def _left_x(surface: tuple[float, ...], x_r: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The left-image x whose surface point lands at right-image x_r."""
    a, b, c, kx, ky, _, _ = surface
    if kx == 0 and ky == 0:
        return (x_r + a + c * y) / (1.0 - b)
    x_l = x_r + _disparity(surface, x_r, y)
    for _ in range(40):
        nxt = x_r + _disparity(surface, x_l, y)
        if np.max(np.abs(nxt - x_l)) < 1e-7:
            return nxt
        x_l = nxt
    return x_l


def _fit_surface(surface: tuple[float, ...], lo: float, hi: float, h: int, w: int) -> tuple[float, ...]:
    """Shrink the surface's variation about its value at the centre so d stays in [lo, hi] over the frame."""
    yy, xx = np.meshgrid(np.linspace(0, h, 9), np.linspace(0, w, 17), indexing="ij")
    d = _disparity(surface, xx, yy)
    a, b, c, kx, ky, cx, cy = surface
    centre = float(_disparity(surface, np.array(w / 2), np.array(h / 2)))
    centre = min(max(centre, lo), hi)
    span_hi, span_lo = float(d.max()) - centre, centre - float(d.min())
    scale = 1.0
    if span_hi > hi - centre and span_hi > 0:
        scale = min(scale, (hi - centre) / span_hi)
    if span_lo > centre - lo and span_lo > 0:
        scale = min(scale, (centre - lo) / span_lo)
    b, c, kx, ky = b * scale, c * scale, kx * scale, ky * scale
    a = centre - float(_disparity((0.0, b, c, kx, ky, cx, cy), np.array(w / 2), np.array(h / 2)))
    return (a, b, c, kx, ky, cx, cy)


def _render(layers: list[Layer], h: int, w: int, margin: int, right: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radiance, disparity and winning-layer index of one view."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    image = np.zeros((h, w, 3), np.float32)
    best = np.full((h, w), -np.inf)
    owner = np.full((h, w), -1, np.int32)
    for index, layer in enumerate(layers):
        x_l = _left_x(layer.surface, xx, yy) if right else xx
        d = _disparity(layer.surface, x_l, yy)
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


# ---------------------------------------------------------------- cameras


def draw_camera(rng: np.random.Generator, options: SceneOptions) -> Camera:
    g = options.gamma
    return Camera(
        gain=float(rng.uniform(1 - options.gain, 1 + options.gain)),
        offset=float(rng.uniform(-options.offset, options.offset)),
        gamma=float(np.exp(rng.uniform(-np.log1p(g), np.log1p(g)))),
        vignette=float(rng.uniform(0, options.vignette)),
        blur=float(rng.uniform(0, options.blur)),
        noise=float(rng.uniform(0, options.noise)),
    )


def vignette_map(h: int, w: int, strength: float) -> np.ndarray:
    """1 at the centre, 1 - strength in the corners, falling with the squared distance from the centre."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
    return 1.0 - strength * r2


def photograph(radiance: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """What one camera records of a radiance image in [0, 255]: uint8 BGR."""
    h, w = radiance.shape[:2]
    x = np.clip(radiance, 0, 255) / 255.0
    if camera.vignette:
        x = x * vignette_map(h, w, camera.vignette)[..., None]
    if camera.blur > 0.05:
        x = cv2.GaussianBlur(x, (0, 0), camera.blur)
    v = 255.0 * camera.gain * np.power(x, camera.gamma) + camera.offset
    if camera.noise:
        v = v + rng.normal(0, camera.noise, v.shape)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- scenes


def render_scene(rng: np.random.Generator, height: int, width: int, maxdisp: float,
                 options: SceneOptions = SceneOptions()) -> Scene:
    margin = int(np.ceil(maxdisp)) + 8
    tex_w = width + 2 * margin
    layers: list[Layer] = []
    # Background: slanted and perhaps curved, in the far part of the range, covering the whole view.
    lo, hi = options.background
    d0 = rng.uniform(lo, hi) * maxdisp
    surface = (
        d0,
        rng.uniform(-options.slant, options.slant) * maxdisp / width,
        rng.uniform(0.0, options.slant) * maxdisp / height,  # the ground comes closer towards the bottom
        rng.uniform(-options.curvature, options.curvature) * maxdisp / (width / 2) ** 2,
        rng.uniform(-options.curvature, options.curvature) * maxdisp / (height / 2) ** 2,
        rng.uniform(0, width), rng.uniform(0, height),
    )
    kind = _texture_kind(rng, options)
    kind = "pink" if kind == "stripes" else kind  # a striped wall behind everything would make whole scenes ambiguous
    layers.append(Layer(make_texture(rng, height, tex_w, kind),
                        _fit_surface(surface, 0.5, 0.98 * maxdisp, height, width + margin), None))
    flo, fhi = options.foreground
    for _ in range(int(rng.integers(options.min_objects, options.max_objects + 1))):
        shape = _random_shape(rng, height, width, options)
        bulge = (0.0, 0.0, 0.0, 0.0)
        if options.object_curvature and rng.random() < 0.5:
            # a smooth curved surface (a cylinder or a dome seen from the front), centred on the object
            centre = shape[1][:2] if shape[0] == "ellipse" else shape[1].mean(axis=0)
            k = -rng.uniform(0, options.object_curvature) * maxdisp
            bulge = (k / (width / 2) ** 2, k / (height / 2) ** 2 * float(rng.random() < 0.6), float(centre[0]), float(centre[1]))
        plane = (
            rng.uniform(flo, fhi) * maxdisp,
            rng.uniform(-options.slant, options.slant) * maxdisp / width,
            rng.uniform(-options.slant, options.slant) * maxdisp / height,
            *bulge,
        )
        texture = make_texture(rng, height, tex_w, _texture_kind(rng, options))
        layers.append(Layer(texture, _fit_surface(plane, 0.5, 0.98 * maxdisp, height, width + margin), shape))
    left, disp, owner_l = _render(layers, height, width, margin, right=False)
    right, _, owner_r = _render(layers, height, width, margin, right=True)
    # A left pixel is seen in the right view when the right pixels around x - d belong to its layer.
    xr = np.arange(width)[None, :] - disp
    x0 = np.clip(np.floor(xr).astype(int), 0, width - 1)
    x1 = np.clip(x0 + 1, 0, width - 1)
    rows = np.arange(height)[:, None]
    nonocc = (xr >= 0) & (owner_r[rows, x0] == owner_l) & (owner_r[rows, x1] == owner_l)
    disp = np.clip(disp, 0.0, None)
    cameras = (draw_camera(rng, options), draw_camera(rng, options))
    return Scene(photograph(left, cameras[0], rng), photograph(right, cameras[1], rng), disp, nonocc, cameras)


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
