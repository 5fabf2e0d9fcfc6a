"""Target profiles: which ops run on the integer accelerator path, under which constraints, and
how fast the target is (for the performance estimate). Shipped as JSON beside this module; a user
passes a path to their own."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stereokit.errors import StereokitError

TARGETS_DIR = Path(__file__).parent / "targets"


class OpRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str
    max_kernel: int | None = None
    strides: list[int] | None = None
    dilations: list[int] | None = None
    max_channels: int | None = None
    resize_modes: list[str] | None = None
    max_rank: int = 4
    dtypes: list[str] | None = Field(None, description="activation types this op takes on the accelerator; default the profile's activation_dtypes")
    data_movement: bool = Field(False, description="moves int8 data without arithmetic (needs no Q/DQ of its own)")


class TargetProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    source: str = Field("", description="where the rules come from (a vendor's docs, or the runtime's own report)")
    activation_dtypes: list[str] = Field(["uint8", "int8"], description="activation types the accelerator takes at all (uint8, int8, int16)")
    macs_per_cycle: float = Field(gt=0)
    bytes_per_cycle: float = Field(gt=0)
    frequency_mhz: float = Field(gt=0)
    cpu_macs_per_cycle: float = Field(gt=0)
    cpu_bytes_per_cycle: float = Field(gt=0)
    ops: list[OpRule]
    allowed_float_ops: list[str] = Field(default_factory=list, description="float ops tolerated on the CPU (islands, post-process)")

    def rule(self, op: str) -> OpRule | None:
        return next((r for r in self.ops if r.op == op), None)


def shipped_targets() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.json"))


def load_target(name_or_path: str) -> TargetProfile:
    """A shipped target by name (bpu-sim) or a JSON file of the same schema."""
    path = Path(name_or_path)
    if path.is_dir():
        raise StereokitError(f"{path}: is a directory, not a target profile .json.")
    if not path.suffix:
        path = TARGETS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise StereokitError(f"--target: no target '{name_or_path}'; shipped: {', '.join(shipped_targets())}, or pass a profile .json.")
    try:
        return TargetProfile.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise StereokitError(f"{path}: target profile not found.") from None
    except OSError as exc:
        raise StereokitError(f"{path}: cannot read the target profile ({exc.strerror or exc.__class__.__name__}).") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StereokitError(f"{path}: bad target profile at '{where}': {first['msg']}.") from None
    except ValueError:
        raise StereokitError(f"{path}: not a JSON target profile.") from None
