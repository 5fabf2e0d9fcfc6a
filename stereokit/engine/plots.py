"""Pictures a person would rather look at than numbers: loss curves, disparity/error panels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stereokit.data.validity import valid_mask
from stereokit.runs import atomic_write_bytes


def png_bytes(image: np.ndarray) -> bytes:
    """An image array (uint8 BGR, grey, or uint16) encoded as PNG."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError("could not encode a picture as PNG")
    return data.tobytes()


def write_png(path: Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(image))


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def depth_picture(depth: np.ndarray, unit: str = "m") -> bytes:
    """A coloured depth map with a colour bar in the depth's unit (near warm, far cool)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = depth[depth > 0]
    vmin, vmax = (float(np.percentile(valid, 2)), float(np.percentile(valid, 98))) if valid.size else (0.0, 1.0)
    h, w = depth.shape
    fig, ax = plt.subplots(figsize=(max(4.0, w / 100 + 1.2), max(3.0, h / 100)), dpi=100)
    image = ax.imshow(np.where(depth > 0, depth, np.nan), cmap="turbo_r", vmin=vmin, vmax=vmax)
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, label=f"depth ({unit})", fraction=0.046, pad=0.02)
    fig.tight_layout()
    return figure_png(fig)


def depth_colour(depth: np.ndarray) -> np.ndarray:
    """Depth as a BGR panel for side-by-side pictures: near warm, far cool, invalid black."""
    valid = depth[depth > 0]
    vmax = float(np.percentile(valid, 98)) if valid.size else 1.0
    return colorize(np.where(depth > 0, vmax - np.minimum(depth, vmax), np.nan), vmax)


def colorize(values: np.ndarray, vmax: float, cmap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """HxW float -> HxWx3 BGR, 0..vmax mapped through a colour map; non-finite is black."""
    finite = np.isfinite(values)
    scaled = np.clip(np.where(finite, values, 0) / max(vmax, 1e-6), 0, 1)
    image = cv2.applyColorMap((scaled * 255).astype(np.uint8), cmap)
    image[~finite] = 0
    return image


def disparity_panel(left_bgr: np.ndarray, gt: np.ndarray | None, pred: np.ndarray, maxdisp: float) -> np.ndarray:
    """left | ground truth | prediction | error (0..5 px, invalid black), side by side."""
    valid = valid_mask(gt, maxdisp) if gt is not None else None
    vmax = float(gt[valid].max()) if valid is not None and valid.any() else float(pred.max())
    panels = [left_bgr]
    if gt is not None:
        panels.append(colorize(np.where(valid, gt, np.nan), vmax))
    panels.append(colorize(pred, vmax))
    if gt is not None:
        err = np.where(valid, np.abs(pred - gt), np.nan)
        panels.append(colorize(err, 5.0, cv2.COLORMAP_HOT))
    return np.concatenate(panels, axis=1)


def write_panel(path: Path, left_bgr: np.ndarray, gt: np.ndarray | None, pred: np.ndarray, maxdisp: float) -> None:
    write_png(path, disparity_panel(left_bgr, gt, pred, maxdisp))


def plot_loss_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss per logged step and validation EPE, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["val"]["epe"]) for h in history if "val" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "o-", label="val EPE (px)", color="tab:red")
        ax2.set_ylabel("EPE (px)")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig))
