"""infer's range note: one line when a pair's disparities pile up at the largest the model can give
at the scale it ran, none otherwise."""

from __future__ import annotations

import numpy as np

from stereokit.services.infer import range_note


def test_the_note_fires_when_pixels_pile_up_at_the_largest_disparity() -> None:
    disp = np.full((100, 100), 40.0, np.float32)
    assert range_note(disp, 192.0) is None
    disp[:5] = 190.0  # 5% at 0.99 maxdisp
    note = range_note(disp, 192.0)
    assert note is not None and note.startswith("5% of pixels reach the model's largest disparity (192 px")
    # the same pair run at half size: the largest disparity it can give is 384 px of the pair's
    assert range_note(disp, 384.0) is None
    assert range_note(disp, 0.0) is None
