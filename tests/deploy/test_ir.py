"""Reading the IR's metadata: what check, compile and infer take from the file itself."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from stereokit.deploy.ir import REQUIRED_METADATA, ir_metadata, islands_for, load_ir, read_metadata
from stereokit.errors import StereokitError


def _model(meta: dict[str, str]) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    helper.set_model_props(model, meta)
    return model


def _full_metadata(**override: str) -> dict[str, str]:
    meta = {key: "0" for key in REQUIRED_METADATA}
    meta.update(int16_modules=json.dumps(["model.head.soft_argmin"]), float_modules=json.dumps(["model.head.refine.2.upsample"]))
    meta.update(override)
    return meta


def test_islands_come_from_the_files_own_precision_map(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_model(_full_metadata()), path)
    model = load_ir(path)
    assert islands_for(model, str(path)) == ["model.head.refine.2.upsample"]
    assert read_metadata(path)["int16_modules"] == json.dumps(["model.head.soft_argmin"])


def test_an_onnx_without_stereokits_metadata_is_refused_by_name() -> None:
    meta = _full_metadata()
    del meta["maxdisp"], meta["float_modules"]
    with pytest.raises(StereokitError, match=r"a\.onnx: not a stereokit IR \(its metadata lacks maxdisp, float_modules\)"):
        ir_metadata(_model(meta), "a.onnx")


@pytest.mark.parametrize("value", ["not json", json.dumps({"a": 1}), json.dumps([1, 2])])
def test_a_precision_map_that_is_not_a_list_of_paths_is_refused(value: str) -> None:
    with pytest.raises(StereokitError, match="its int16_modules metadata is not a JSON list of module paths"):
        islands_for(_model(_full_metadata(int16_modules=value)), "a.onnx")


def test_a_damaged_file_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "model[1].onnx"
    path.write_bytes(b"\x08\x07garbage" * 10)
    for read in (load_ir, read_metadata):
        with pytest.raises(StereokitError, match=r"model\[1\]\.onnx: not a readable ONNX model\."):
            read(path)
