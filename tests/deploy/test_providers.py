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
