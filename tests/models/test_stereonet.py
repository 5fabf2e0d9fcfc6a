from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from stereokit.config import StereokitConfig
from stereokit.models import DeployModel, build_stereonet, multiscale_loss, predict
from stereokit.models.stereonet import shift_right_view


@pytest.mark.parametrize("size", [(64, 128), (96, 160)])
def test_forward_shapes_at_two_sizes(small_cfg: StereokitConfig, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_stereonet(small_cfg.model).eval()
    h, w = size
    x = torch.randn(2, 3, h, w)
    outs = model(x, x)
    assert len(outs) == small_cfg.model.refine_levels + 1
    expected = [(h // 16, w // 16), (h // 8, w // 8), (h // 4, w // 4), (h // 2, w // 2), (h, w)]
    assert [tuple(o.shape) for o in outs] == [(2, 1, eh, ew) for eh, ew in expected]
    # normalised disparity: soft-argmin lies in [0, 1), refinements are ReLU'd
    assert float(outs[0].min()) >= 0.0 and float(outs[0].max()) < 1.0
    disp = predict(model, x, x)
    assert disp.shape == (2, 1, h, w)
    assert float(disp.min()) >= 0.0 and float(disp.max()) <= small_cfg.model.maxdisp


def test_any_size_is_padded_and_cropped_back(small_cfg: StereokitConfig) -> None:
    model = build_stereonet(small_cfg.model).eval()
    x = torch.randn(1, 3, 70, 101)
    assert predict(model, x, x).shape == (1, 1, 70, 101)


def test_training_returns_five_maps_finite_loss_and_gradients_everywhere(small_cfg: StereokitConfig) -> None:
    torch.manual_seed(0)
    model = build_stereonet(small_cfg.model).train()
    imgl, imgr = torch.randn(2, 3, 64, 128), torch.randn(2, 3, 64, 128)
    gt = torch.rand(2, 1, 64, 128) * 80  # some pixels beyond maxdisp: masked out
    outs = model(imgl, imgr)
    assert len(outs) == 5
    loss = multiscale_loss(outs, gt, small_cfg.model.maxdisp, small_cfg.model.loss_weights)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    # The refinement residuals start at zero (a plain upsampling), so the layers before them get
    # their first gradient after one step; then every parameter must be reached.
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    model.zero_grad()
    multiscale_loss(model(imgl, imgr), gt, small_cfg.model.maxdisp, small_cfg.model.loss_weights).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_fixed_layers_are_not_trained(small_cfg: StereokitConfig) -> None:
    model = build_stereonet(small_cfg.model)
    assert not model.head.cost_volume.group_reduce.weight.requires_grad
    assert not model.head.soft_argmin.regression.weight.requires_grad
    d = small_cfg.model.num_disparities
    assert torch.allclose(model.head.soft_argmin.regression.weight.flatten(), torch.arange(d) / d)


def test_group_wise_correlation_matches_the_definition(small_cfg: StereokitConfig) -> None:
    torch.manual_seed(0)
    cv = build_stereonet(small_cfg.model).head.cost_volume
    fl, fr = torch.randn(1, 32, 4, 9), torch.randn(1, 32, 4, 9)
    cl, cr = torch.randn(1, 8, 4, 9), torch.randn(1, 8, 4, 9)
    vol = cv(fl, fr, cl, cr)
    groups = small_cfg.model.groups
    assert vol.shape == (1, groups + 16, small_cfg.model.num_disparities, 4, 9)
    d, x = 2, 6
    expected = (fl[0, :, :, x] * fr[0, :, :, x - d]).view(groups, 32 // groups, 4).mean(1)
    assert torch.allclose(vol[0, :groups, d, :, x], expected, atol=1e-5)
    assert torch.equal(vol[0, groups + 8 :, d, :, x], cr[0, :, :, x - d])


def test_shift_repeats_the_first_column_into_the_gap() -> None:
    x = torch.arange(5.0).view(1, 1, 1, 5)
    assert shift_right_view(x, 2).flatten().tolist() == [0, 0, 0, 1, 2]
    assert shift_right_view(x, 9).flatten().tolist() == [0, 0, 0, 0, 0]


def test_onnx_export_matches_torch(small_cfg: StereokitConfig, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_stereonet(small_cfg.model).eval()
    deploy = DeployModel(model).eval()
    imgl, imgr = torch.randn(1, 3, 64, 128), torch.randn(1, 3, 64, 128)
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        deploy, (imgl, imgr), str(path), input_names=["imgl", "imgr"], output_names=["disparity"],
        opset_version=17, dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"imgl": imgl.numpy(), "imgr": imgr.numpy()})
    with torch.no_grad():
        want = deploy(imgl, imgr).numpy()
    assert got.shape == (1, 1, 64, 128)
    assert np.abs(got - want).max() < 1e-3


def test_under_cpu_bf16_autocast_the_3d_convs_and_the_disparity_stay_float32(small_cfg: StereokitConfig) -> None:
    """bf16 would put the disparity on a 0.75 px grid at maxdisp 192, and its Conv3d backward gave
    NaN gradients on the CPU: both run in float32, the 2-D convs in bf16."""
    model = build_stereonet(small_cfg.model)
    seen: dict[str, torch.dtype] = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    x = torch.rand(2, 3, 64, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(x, x.roll(2, dims=3))
    assert all(o.dtype == torch.float32 for o in outputs)
    conv3d = [n for n in seen if n.startswith("head.aggregation.")]
    assert conv3d and all(seen[n] == torch.float32 for n in conv3d)
    assert seen["head.soft_argmin.regression"] == torch.float32
    assert seen["head.cost_volume.group_reduce"] == torch.bfloat16
    assert seen["neck.stem.0.0"] == torch.bfloat16 and seen["head.refine.0.conv_in.0"] == torch.bfloat16
    sum(o.mean() for o in outputs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
