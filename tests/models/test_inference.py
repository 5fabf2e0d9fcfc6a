from __future__ import annotations

import torch
from torch import nn

from stereokit.config import StereokitConfig
from stereokit.models import build_stereonet
from stereokit.models.inference import OneDnnConv3d, prepare_for_inference


def _trained_like(cfg: StereokitConfig) -> nn.Module:
    """A model whose BN statistics are not the identity, as after training."""
    torch.manual_seed(0)
    model = build_stereonet(cfg.model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.Conv2d) and m.weight.requires_grad and not m.weight.abs().sum():
                nn.init.normal_(m.weight, std=0.05)  # the refinement residuals start at zero
    return model.eval()


def test_prepared_float_model_matches_eager(small_cfg: StereokitConfig) -> None:
    model = _trained_like(small_cfg)
    prepared = prepare_for_inference(model, "cpu")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())  # folded
    assert any(isinstance(m, OneDnnConv3d) for m in prepared.modules())
    x, y = torch.randn(1, 3, 64, 128), torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        eager, fast = model(x, y), prepared(x, y)
    for a, b in zip(eager, fast):
        # normalised disparity; x maxdisp 64 -> pixels: under 1e-3 px
        assert (a - b).abs().max().item() * small_cfg.model.maxdisp < 1e-3
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_onednn_conv3d_equals_torch_conv3d_at_batch_one() -> None:
    torch.manual_seed(1)
    conv = nn.Conv3d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 6, 10, 12)
    with torch.no_grad():
        assert torch.allclose(OneDnnConv3d(conv)(x), conv(x), atol=1e-5)
    # with autograd on it is the plain conv, so training is unaffected
    assert OneDnnConv3d(conv)(x.requires_grad_()).requires_grad


def test_prepared_fake_quant_and_integer_models_match_eager(small_cfg: StereokitConfig) -> None:
    from stereokit.quant.convert import to_int_model
    from stereokit.quant.prepare import prepare_quant_model, set_fake_quant, set_observers

    model = prepare_quant_model(_trained_like(small_cfg), small_cfg).eval()
    x, y = torch.randn(1, 3, 64, 128), torch.randn(1, 3, 64, 128)
    set_fake_quant(model, False)
    with torch.no_grad():
        model(x, y)
    set_observers(model, False, weights_too=True)
    set_fake_quant(model, True)
    prepared = prepare_for_inference(model, "cpu")
    with torch.no_grad():
        eager, fast = model(x, y)[-1], prepared(x, y)[-1]
    # the same quantizers on the same values: equal up to a rare rounding tie flipping one step
    steps = ((eager - fast).abs() * small_cfg.model.maxdisp > 1e-3).float().mean().item()
    assert steps < 1e-3
    int_model = to_int_model(model)
    assert prepare_for_inference(int_model) is int_model
