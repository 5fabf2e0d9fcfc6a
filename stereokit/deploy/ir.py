"""Reading a stereokit IR (the QDQ ONNX that `export` writes) and the metadata it carries.

The IR is self-describing: the precision map, maxdisp and preprocessing travel in its metadata, so
check, compile and infer read them from the file rather than from the run that made it.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from stereokit.errors import StereokitError

REQUIRED_METADATA = ("source_stage", "maxdisp", "mean", "std", "rgb_input", "int16_modules", "float_modules")


def load_ir(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception:  # noqa: BLE001 - protobuf raises several types on damaged input
        raise StereokitError(f"{path}: not a readable ONNX model.") from None


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Whatever metadata the model has (a float ONNX may have none)."""
    return {p.key: p.value for p in model.metadata_props}


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of the ONNX file at `path`, without reading its weights; one sentence when it is unreadable."""
    try:
        return metadata(onnx.load(str(path), load_external_data=False))
    except Exception:  # noqa: BLE001 - protobuf raises several types on damaged input
        raise StereokitError(f"{path}: not a readable ONNX model.") from None


def ir_metadata(model: onnx.ModelProto, name: str) -> dict[str, str]:
    """The IR's own metadata; a model without what stereokit writes into it is refused."""
    meta = metadata(model)
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise StereokitError(f"{name}: not a stereokit IR (its metadata lacks {', '.join(missing)}); make it with 'stereokit export'.")
    return meta


def input_size(model: onnx.ModelProto, name: str) -> tuple[int, int]:
    """The (height, width) of the IR's static left-image input: the size it was exported at."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] if model.graph.input else []
    if len(dims) != 4 or min(dims) <= 0:
        raise StereokitError(f"{name}: its first input is not a static NCHW image (shape {dims}); make it with 'stereokit export'.")
    return dims[2], dims[3]


def islands_for(model: onnx.ModelProto, name: str) -> list[str]:
    """The module paths the IR's own precision map keeps in float (their ops may fall back to the
    CPU), so a copied .onnx checks and compiles the same as the one in its run."""
    meta = ir_metadata(model, name)
    lists = {}
    for key in ("int16_modules", "float_modules"):
        try:
            lists[key] = json.loads(meta[key])
        except (ValueError, TypeError):
            lists[key] = None
        if not isinstance(lists[key], list) or not all(isinstance(p, str) for p in lists[key]):
            raise StereokitError(f"{name}: its {key} metadata is not a JSON list of module paths.")
    return lists["float_modules"]
