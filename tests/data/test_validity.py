"""The scored pixels: 0 < gt < maxdisp, the same for numpy and torch, never NaN or inf."""

from __future__ import annotations

import numpy as np
import torch

from stereokit.data.validity import valid_mask

VALUES = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e-3, 63.9, 64.0, 70.0]
EXPECTED = [False, False, False, False, False, True, True, False, False]


def test_numpy_and_torch_agree_on_every_edge() -> None:
    array = np.array(VALUES, np.float32)
    assert valid_mask(array, 64).tolist() == EXPECTED
    assert valid_mask(torch.from_numpy(array), 64).tolist() == EXPECTED
    assert valid_mask(array, 64).dtype == np.bool_ and valid_mask(torch.from_numpy(array), 64).dtype == torch.bool
