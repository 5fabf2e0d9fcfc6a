"""Padding a pair for the network and cropping its prediction back."""

from __future__ import annotations

import torch

from stereokit.models.postprocess import pad_to_multiple, pad_to_size, postprocess


def test_pad_to_size_repeats_the_edges_and_keeps_the_image_top_left() -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded = pad_to_size(x, 8, 16)
    assert padded.shape == (2, 3, 8, 16)
    assert torch.equal(padded[..., :5, :7], x)
    assert torch.equal(padded[..., 7, :7], x[..., 4, :])  # the last row repeated
    assert torch.equal(padded[..., :5, 15], x[..., :, 6])  # the last column repeated
    assert pad_to_size(x, 5, 7) is x


def test_pad_to_multiple_and_postprocess_give_back_the_input_size() -> None:
    x = torch.rand(1, 3, 37, 70)
    padded, pad = pad_to_multiple(x)
    assert padded.shape[-2:] == (64, 96) and pad == (27, 26)
    disp = postprocess([torch.full((1, 1, 16, 24), 0.25)], tuple(padded.shape[-2:]), 192, pad)
    assert disp.shape == (1, 1, 37, 70) and torch.allclose(disp, torch.full_like(disp, 48.0))
