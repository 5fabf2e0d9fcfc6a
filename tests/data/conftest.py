from __future__ import annotations

from pathlib import Path

import pytest

from stereokit.services.synth import run_synth


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated SceneFlow-format tree shared by the data tests (read-only for them)."""
    out = tmp_path_factory.mktemp("synth") / "SceneFlow"
    run_synth(out, num_train=6, num_test=3, height=64, width=128, maxdisp=24, seed=5, show_progress=False)
    return out
