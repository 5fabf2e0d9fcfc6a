from __future__ import annotations

import onnxruntime as ort
import pytest

from stereokit.deploy.providers import choose_providers
from stereokit.errors import StereokitError


def test_auto_uses_a_gpu_provider_only_where_a_gpu_is_visible() -> None:
    import torch

    chosen = choose_providers("auto")
    assert chosen[-1] == "CPUExecutionProvider"
    if not torch.cuda.is_available():
        assert chosen == ["CPUExecutionProvider"]
    assert all(p in ort.get_available_providers() for p in chosen)


def test_a_named_provider_keeps_the_cpu_as_fallback() -> None:
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    assert choose_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]


def test_a_provider_that_is_not_installed_lists_the_installed_ones() -> None:
    missing = "bogus" if "TensorrtExecutionProvider" in ort.get_available_providers() else "tensorrt"
    with pytest.raises(StereokitError, match=r"--provider: '.*' is not installed in this ONNX Runtime; installed: .*cpu"):
        choose_providers(missing)


def test_the_integer_graph_never_goes_to_a_gpu_provider_automatically() -> None:
    assert choose_providers("auto", integer_graph=True) == ["CPUExecutionProvider"]


def test_placement_counts_the_nodes_each_provider_ran(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from stereokit.deploy.providers import node_placement

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="r"), helper.make_node("Neg", ["h"], ["y"], name="n")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    placed = node_placement(model.SerializeToString(), "cpu", {"x": np.ones((1, 4), np.float32)})
    assert placed == {"cpu": {"Neg": 1, "Relu": 1}}
    onnx.checker.check_model(model)
