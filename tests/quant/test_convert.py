"""int_infer's residual adds and average pools round as the integer runtime (ONNX Runtime) rounds them."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.ao.nn.quantized as nnq
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from stereokit.quant.convert import RoundedAvgPool, RuntimeAddFunctional


def _qdq_session(nodes: list, inputs: list[str], shape_in: list[int], shape_out: list[int], params: dict[str, tuple[float, int]]) -> ort.InferenceSession:
    inits = []
    for name, (scale, zero_point) in params.items():
        inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"), numpy_helper.from_array(np.array(zero_point, np.uint8), f"{name}_z")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.UINT8, shape_in) for i in inputs],
                              [helper.make_tensor_value_info("c", TensorProto.UINT8, shape_out)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _quantized(rng: np.random.Generator, shape: tuple[int, ...], scale: float, zero_point: int) -> torch.Tensor:
    values = torch.from_numpy(rng.integers(0, 128, shape, dtype=np.uint8))
    return torch._make_per_tensor_quantized_tensor(values, scale, zero_point)


def _runtime_add(scale: float, zero_point: int) -> RuntimeAddFunctional:
    plain = nnq.QFunctional()
    plain.scale, plain.zero_point = scale, zero_point
    return RuntimeAddFunctional.from_qfunctional(plain)


@pytest.mark.parametrize("seed", range(4))
def test_add_relu_matches_onnx_runtimes_qlinearadd_to_the_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (1, 8, 32, 64)
    # scale ratios near 1 and odd zero points, as the network's residual adds have them: many near-ties
    (sa, za), (sb, zb), (sc, zc) = (0.03 * rng.uniform(0.9, 1.6), int(rng.integers(100, 140))), (0.03, int(rng.integers(100, 140))), (0.03, 0)
    x, y = _quantized(rng, shape, sa, za), _quantized(rng, shape, sb, zb)
    add = _runtime_add(sc, zc)
    ours = add.add_relu(x, y)
    session = _qdq_session([helper.make_node("DequantizeLinear", ["a", "a_s", "a_z"], ["fa"]),
                            helper.make_node("DequantizeLinear", ["b", "b_s", "b_z"], ["fb"]),
                            helper.make_node("Add", ["fa", "fb"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
                            helper.make_node("QuantizeLinear", ["r", "c_s", "c_z"], ["c"])],
                           ["a", "b"], list(shape), list(shape), {"a": (sa, za), "b": (sb, zb), "c": (sc, zc)})
    theirs = session.run(None, {"a": x.int_repr().numpy(), "b": y.int_repr().numpy()})[0]
    assert ours.q_scale() == pytest.approx(sc) and ours.q_zero_point() == zc
    np.testing.assert_array_equal(ours.int_repr().numpy(), theirs)


@pytest.mark.parametrize("same_scale", [True, False])
def test_average_pool_matches_onnx_runtimes_qlinearaveragepool_to_the_bit(same_scale: bool) -> None:
    rng = np.random.default_rng(3)
    shape = (1, 3, 64, 128)
    sx, zx = 0.0076, 130
    sy, zy = (sx, zx) if same_scale else (0.0081, 131)  # the image pyramid's second level: every average of 4 grid values is a quarter
    x = _quantized(rng, shape, sx, zx)
    ours = RoundedAvgPool(nn.AvgPool2d(2, 2), sy, zy)(x)
    session = _qdq_session([helper.make_node("DequantizeLinear", ["a", "a_s", "a_z"], ["f"]),
                            helper.make_node("AveragePool", ["f"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                            helper.make_node("QuantizeLinear", ["p", "c_s", "c_z"], ["c"])],
                           ["a"], list(shape), [1, 3, 32, 64], {"a": (sx, zx), "c": (sy, zy)})
    theirs = session.run(None, {"a": x.int_repr().numpy()})[0]
    np.testing.assert_array_equal(ours.int_repr().numpy(), theirs)
    # and it is an average: within half a step of the exact one
    exact = torch.nn.functional.avg_pool2d(x.dequantize(), 2)
    assert (ours.dequantize() - exact).abs().max() <= sy / 2 + 1e-6


def test_a_padded_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="unpadded"):
        RoundedAvgPool(nn.AvgPool2d(3, 1, padding=1), 0.01, 0)
