"""Textures cut from real photographs: the sample images scikit-image ships with its wheel.

Procedural textures alone teach a network statistics that photographs do not have (its model then
gives a smooth blob on a real pair); crops of real photographs carry real edges, shading and clutter.
The stereo pair scikit-image ships (Motorcycle) is never a texture: it is kept for evaluation only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

# Every photograph in skimage/data except the Motorcycle stereo pair (evaluation only) and the drawn
# or rendered images (chessboard, colour wheel, horse silhouette, logo, phantom).
PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png", "moon.png",
    "page.png", "retina.jpg", "rocket.jpg", "text.png",
)
EVALUATION_ONLY = ("motorcycle_left.png", "motorcycle_right.png", "motorcycle_disp.npz")


def photo_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


@lru_cache(maxsize=1)
def load_photos() -> tuple[np.ndarray, ...]:
    """The photographs as [H, W, 3] float32 BGR in [0, 255] (grey ones repeated to three channels)."""
    from skimage.io import imread  # through imageio: OpenCV's libpng warns about some files' colour profiles

    photos = []
    for name in PHOTOS:
        path = photo_dir() / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: scikit-image's sample photograph is missing; reinstall scikit-image.")
        image = np.asarray(imread(path))
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = image[..., :3][..., ::-1]  # RGB(A) -> BGR
        if image.dtype != np.uint8:
            image = cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX)
        photos.append(np.ascontiguousarray(image, dtype=np.float32))
    return tuple(photos)


def photo_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A [h, w, 3] float32 texture in [0, 255]: a random window of a random photograph at a random
    scale, flipped or turned, with its colours shifted so one photograph gives many surfaces."""
    photos = load_photos()
    photo = photos[int(rng.integers(0, len(photos)))]
    if rng.random() < 0.5:
        photo = photo[:, ::-1]
    if rng.random() < 0.3:
        photo = np.ascontiguousarray(np.rot90(photo))
    ph, pw = photo.shape[:2]
    # Window of the photograph mapped onto the texture: 0.5x to 2x magnification, clipped to the photo.
    zoom = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    wh, ww = min(ph, max(8, int(h / zoom))), min(pw, max(8, int(w / zoom)))
    top, left = int(rng.integers(0, ph - wh + 1)), int(rng.integers(0, pw - ww + 1))
    window = np.ascontiguousarray(photo[top:top + wh, left:left + ww])
    texture = cv2.resize(window, (w, h), interpolation=cv2.INTER_AREA if ww > w else cv2.INTER_CUBIC)
    gains = rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    shift = rng.uniform(-25, 25, size=3).astype(np.float32)
    return np.clip(texture * gains + shift, 0, 255).astype(np.float32)
