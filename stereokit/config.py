"""Every setting as a typed pydantic model; the defaults are the reference StereoNet/SceneFlow recipe.

A config is built from the defaults, then a YAML file, then `--set section.key=value` overrides,
in that order. Unknown keys and wrong types are refused with the key's dotted path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stereokit.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """StereoNet as the reference toolchain builds it."""

    maxdisp: int = Field(192, gt=0, description="largest disparity in pixels; a multiple of 16")
    out_channels: list[int] = Field(
        [32, 32, 64, 128, 128, 16],
        description="neck: stem, 1/4, 1/8, 1/16, 1/16 stages, then the concat feature",
    )
    neck_blocks: list[int] = Field(
        [3, 16, 3, 3], description="residual blocks in the neck's 1/4, 1/8, 1/16 and second 1/16 stages (the reference's)"
    )
    cost_scale: Literal[8, 16] = Field(16, description="resolution of the cost volume: 1/16 (the reference) or 1/8 (D doubles)")
    groups: int = Field(32, gt=0, description="group-wise correlation groups")
    agg_channels: int = Field(32, gt=0, description="3D aggregation width")
    agg_blocks: int = Field(4, ge=0, description="32->32 3D convs between the first and last")
    refine_levels: int = Field(4, ge=0, le=4, description="refinements at 1/8, 1/4, 1/2, 1/1")
    refine_channels: int = Field(32, gt=0)
    refine_dilations: list[int] = Field([1, 2, 4, 8, 1, 1], description="one residual block each")
    loss_weights: list[float] = Field([0.3, 0.3, 0.5, 0.5, 1.0], description="coarse, then each refinement")

    @field_validator("out_channels")
    @classmethod
    def _six_channels(cls, v: list[int]) -> list[int]:
        if len(v) != 6 or any(c <= 0 for c in v):
            raise ValueError("needs six positive channel counts (stem, 4 stages, concat feature)")
        return v

    @field_validator("neck_blocks")
    @classmethod
    def _four_stages(cls, v: list[int]) -> list[int]:
        if len(v) != 4 or any(n <= 0 for n in v):
            raise ValueError("needs four positive block counts (1/4, 1/8, 1/16, 1/16 stages)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        if self.maxdisp % self.cost_scale:
            raise ValueError(f"maxdisp {self.maxdisp} must be a multiple of {self.cost_scale} (the cost volume is at 1/{self.cost_scale})")
        if self.cost_scale == 8 and self.refine_levels > 3:
            raise ValueError("refine_levels is at most 3 with the cost volume at 1/8 (refinements at 1/4, 1/2, 1/1)")
        matching = self.out_channels[3] + self.out_channels[4]
        if matching % self.groups:
            raise ValueError(f"groups {self.groups} must divide the matching feature's {matching} channels")
        if len(self.loss_weights) != self.refine_levels + 1:
            raise ValueError(f"loss_weights needs refine_levels + 1 = {self.refine_levels + 1} values")
        return self

    @property
    def num_disparities(self) -> int:
        return self.maxdisp // self.cost_scale


class AugmentConfig(_Section):
    """Synthetic-to-real augmentations (stereokit/data/augment.py); every one off by default (the recipe)."""

    scale: tuple[float, float] = Field((1.0, 1.0), description="random rescale before the crop, (low, high); disparities scale with it")
    colour_jitter: float = Field(0.0, ge=0, le=0.5, description="each view's own gamma, contrast, brightness and channel gains, +- this")
    colour_jitter_prob: float = Field(1.0, ge=0, le=1)
    occlusion_prob: float = Field(0.0, ge=0, le=1, description="share of pairs with an occluding patch pasted into the right view")
    vertical_jitter: float = Field(0.0, ge=0, le=4, description="the right view moved up or down by up to this many pixels")
    soften: float = Field(
        1.0, ge=1, le=4,
        description="both views shrunk by a factor up to this and enlarged back: the softness of a pair that infer's auto scale enlarges",
    )
    soften_prob: float = Field(0.5, ge=0, le=1)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 4:
            raise ValueError(f"scale {list(v)} must be a range 0 < low <= high <= 4")
        return v

    @property
    def active(self) -> bool:
        return self.scale != (1.0, 1.0) or self.colour_jitter > 0 or self.occlusion_prob > 0 or self.vertical_jitter > 0 or self.soften > 1


class DataConfig(_Section):
    """Where the data is and how a sample becomes a tensor."""

    data_dir: Path = Field(Path("data/SceneFlow"), description="SceneFlow tree (for folder datasets)")
    train_lmdb: Path = Field(Path("data/lmdb/train_lmdb"))
    test_lmdb: Path = Field(Path("data/lmdb/test_lmdb"))
    format: Literal["lmdb", "folder"] = "lmdb"
    crop: tuple[int, int] = Field((256, 512), description="train crop (height, width)")
    rgb_input: bool = Field(False, description="images arrive as RGB rather than OpenCV's BGR")
    mean: float = 128.0
    std: float = 128.0
    num_workers: int = Field(4, ge=0)
    val_count: int | None = Field(
        None, ge=1,
        description="training pairs held out to select best.pt (a seeded draw); default 10% of the training set, at most 500",
    )
    val_lmdb: Path | None = Field(None, description="a packed validation split to select best.pt on instead of a held-out draw")
    augment: AugmentConfig = AugmentConfig()

    @field_validator("crop")
    @classmethod
    def _crop(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] <= 0 or v[1] <= 0 or v[0] % 32 or v[1] % 32:
            raise ValueError(f"crop {list(v)} must be positive multiples of 32")
        return v


class FloatTrainConfig(_Section):
    """Float stage: Adam, weight decay on weights only, cosine LR with linear warmup."""

    batch_size: int = Field(16, gt=0, description="images per process (per GPU)")
    epochs: int = Field(200, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many steps (overrides epochs)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(4e-5, ge=0)
    warmup_epochs: float = Field(10, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    val_every_epochs: int = Field(1, gt=0)
    log_every_steps: int = Field(20, gt=0)
    checkpoint_every_steps: int = Field(500, gt=0)
    amp: Literal["off", "bf16", "fp16"] = Field(
        "off", description="autocast: bf16 on CUDA or the CPU, fp16 on CUDA; the disparity path stays float32")
    channels_last: bool = Field(False, description="NHWC activations and 2-D conv weights (faster convs on GPUs with tensor cores)")
    compile: bool = Field(False, description="torch.compile the training step (the first step pays the compilation: a minute or more)")
    sync_bn: bool = True
    grad_clip: float | None = Field(None, gt=0)
    residual_lr_scale: float = Field(0.02, gt=0, le=1, description="LR factor for the refinement residual convs")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="keep an exponential moving average of the weights (e.g. 0.999); validation, best.pt and every later stage use the average")
    init_weight: float | None = Field(
        None, gt=0, lt=1, description="with --init: validation, best.pt and every later stage use init_weight x the --init weights "
        "+ (1 - init_weight) x the trained ones (weight-space ensembling, WiSE-FT: a fine-tune that keeps what its start knew)")

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` (in a file or in --set) as the boolean false
        return "off" if value is False else value


class CalibrationConfig(_Section):
    """Observers only: no gradient step."""

    steps: int = Field(20, gt=0)
    batch_size: int = Field(16, gt=0)
    observer: Literal["percentile", "minmax"] = "percentile"
    percentile: float = Field(99.985, gt=50, le=100)


class QatTrainConfig(_Section):
    """Fake-quant fine-tuning from the calibrated model."""

    batch_size: int = Field(16, gt=0)
    epochs: int = Field(40, gt=0)
    max_steps: int | None = Field(None, gt=0)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(4e-5, ge=0)
    lr_milestones: list[int] = Field([20, 35], description="epochs at which the LR is multiplied by gamma")
    gamma: float = Field(0.1, gt=0, le=1)
    channels_last: bool = Field(False, description="as train.float.channels_last (no amp: fake-quant stays float32)")
    compile: bool = Field(False, description="as train.float.compile")
    freeze_bn_after_steps: int = Field(0, ge=0)
    freeze_observers_after_steps: int = Field(0, ge=0)
    val_every_epochs: int = Field(1, gt=0)
    log_every_steps: int = Field(20, gt=0)
    checkpoint_every_steps: int = Field(500, gt=0)
    residual_lr_scale: float = Field(0.02, gt=0, le=1, description="LR factor for the refinement residual convs")


class TrainConfig(_Section):
    float: FloatTrainConfig = FloatTrainConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    qat: QatTrainConfig = QatTrainConfig()


# The reference keeps the softmax, the disparity regression and the refinement outputs at 16 bits,
# the refinement features (conv_in, blocks) at 8.
REFERENCE_INT16 = ("head.soft_argmin", "head.refine.*.upsample", "head.refine.*.cat", "head.refine.*.residual", "head.refine.*.add")


class QuantConfig(_Section):
    """The quantization contract: int8 per-channel symmetric weights, per-tensor activations."""

    weight_dtype: Literal["int8"] = "int8"
    activation_dtype: Literal["uint8", "int8"] = "uint8"
    reduce_range: bool = Field(
        True,
        description="weights use 7 of their 8 bits (|q| <= 64): x86 CPUs without VNNI (PyTorch's engine and the "
        "ONNX Runtime stand-in for the board) saturate u8 x s8 pair sums in 16 bits otherwise; false for a true int8 NPU",
    )
    int16_modules: list[str] = Field(
        default_factory=lambda: list(REFERENCE_INT16),
        description="the precision map: StereoNet module paths (fnmatch patterns) whose activations are symmetric int16; "
        "default the reference's (softmax, regression, and each refinement level's upsampled disparity, concatenation, "
        "residual conv output and residual add + ReLU); [] for all-8-bit. Only the disparity path "
        "(head.soft_argmin, head.refine.N) may be 16-bit",
    )
    float_modules: list[str] = Field(default_factory=list, description="StereoNet module paths deliberately left in float (CPU fallbacks)")


class DeployConfig(_Section):
    input_height: int = Field(544, gt=0)
    input_width: int = Field(960, gt=0)
    opset: int = Field(21, ge=17, le=21, description="ONNX opset of the IR; int16 Q/DQ needs 21")
    target: str = "bpu-sim"
    max_mean_abs_diff_px: float = Field(0.1, ge=0, description="validate-bpu: compiled vs int_infer, mean |diff|")
    max_frac_over_0_5px: float = Field(0.01, ge=0, le=1, description="validate-bpu: share of pixels differing by > 0.5 px")

    @model_validator(mode="after")
    def _multiple_of_32(self) -> "DeployConfig":
        if self.input_height % 32 or self.input_width % 32:
            raise ValueError(f"input {self.input_height}x{self.input_width} must be a multiple of 32")
        return self


def deploy_size(deploy: DeployConfig, height: int | None = None, width: int | None = None,
                what: str = "--height/--width") -> tuple[int, int]:
    """The static input size a model is counted, exported or compiled at: the given height/width,
    each defaulting to the config's deploy size; one sentence when it cannot be one."""
    height = deploy.input_height if height is None else height
    width = deploy.input_width if width is None else width
    if height <= 0 or width <= 0:
        raise ConfigError(f"{what}: input size {height}x{width} must be positive.")
    if height % 32 or width % 32:
        raise ConfigError(f"{what}: input size {height}x{width} must be a multiple of 32 (pad 540 to 544).")
    return height, width


class StereokitConfig(_Section):
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (under DDP: the first GPU of this node's ranks)")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    quant: QuantConfig = QuantConfig()
    deploy: DeployConfig = DeployConfig()

    @model_validator(mode="after")
    def _int16_needs_opset_21(self) -> "StereokitConfig":
        if self.quant.int16_modules and self.deploy.opset < 21:
            raise ValueError(f"deploy.opset {self.deploy.opset} cannot hold the int16 QuantizeLinear of quant.int16_modules; use 21 (or quant.int16_modules=[])")
        return self


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int)) or "<root>"


def _validation_sentence(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    path = _dotted(first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{path}'."
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for '{path}': {msg}."


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is a value, not a section.")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` with the value read as YAML (so 1e-3, [1, 2] and true work)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: config file cannot be read ({exc.__class__.__name__}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, not a {type(data).__name__}.")
    return data


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> StereokitConfig:
    """Defaults, then the YAML file, then each `--set` override."""
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    set_keys: list[str] = []
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
        set_keys.append(key)
    try:
        return StereokitConfig.model_validate(tree)
    except ValidationError as err:
        bad = _dotted(err.errors()[0]["loc"])
        from_set = any(bad == k or bad.startswith(k + ".") or k.startswith(bad + ".") for k in set_keys)
        source = "--set" if from_set or path is None else str(path)
        raise ConfigError(_validation_sentence(err, source)) from None


def config_from_dict(tree: dict[str, Any], source: str) -> StereokitConfig:
    try:
        return StereokitConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_validation_sentence(err, source)) from None


def config_to_yaml(cfg: StereokitConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_hash(cfg: StereokitConfig) -> str:
    """A stable hash of the resolved config, recorded in the run manifest."""
    return _hash(cfg.model_dump(mode="json"))


def _hash(tree: Any) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# The settings each stage's result depends on beyond its parent's checkpoint (the lineage checks that one):
# a stage goes stale when these change, and a setting outside them (train.qat.* for the float stage) can be
# changed for a later stage without remaking the earlier ones. device and data.num_workers change no result.
_SHARED = ("seed", "model", "data")
_DEPLOY = ("model", "data", "quant", "deploy")
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "float": (*_SHARED, "train.float"),
    "adapt": _SHARED,
    "calibration": (*_SHARED, "train.calibration", "quant"),
    "qat": (*_SHARED, "train.qat", "quant"),
    "export": _DEPLOY, "export_float": _DEPLOY, "compile": _DEPLOY,
}
_RESOURCES = (("device",), ("data", "num_workers"))


def stage_settings(cfg: StereokitConfig, stage: str) -> dict[str, Any]:
    """The settings `stage` is made from, by dotted section (compile-<runtime> reads compile's)."""
    tree = cfg.model_dump(mode="json")
    for path in _RESOURCES:
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1])
    sections = STAGE_SECTIONS.get(stage.split("-")[0], tuple(tree))
    out: dict[str, Any] = {}
    for dotted in sections:
        node = tree
        for key in dotted.split("."):
            node = node[key]
        out[dotted] = node
    return out


def stage_config_hash(cfg: StereokitConfig, stage: str) -> str:
    """What a stage's record and checkpoint carry: the hash of stage_settings."""
    return _hash(stage_settings(cfg, stage))


# Settings added since stages were first recorded with per-stage hashes, oldest first, one group per
# change. A stage made before a group existed carries a hash without its keys; while they keep their
# defaults it names the same settings, so upgrading stereokit does not make finished stages stale.
# A new setting joins this list in the change that adds it.
ADDED_SETTINGS: tuple[tuple[str, ...], ...] = (
    ("train.float.init_weight",),
    ("data.augment.soften", "data.augment.soften_prob"),
)


def _drop_if_default(settings: dict[str, Any], defaults: dict[str, Any], dotted: str) -> bool:
    """Remove `dotted` from a stage's settings when it holds its default (or the stage does not read
    it); False when the stage uses another value."""
    section = next((s for s in settings if dotted.startswith(s + ".")), None)
    if section is None:
        return True
    *parents, leaf = dotted.removeprefix(section + ".").split(".")
    node, default = settings[section], defaults[section]
    for key in parents:
        node, default = node[key], default[key]
    if node.get(leaf) != default.get(leaf):
        return False
    node.pop(leaf, None)
    return True


def _hashes_before_additions(cfg: StereokitConfig, stage: str) -> list[str]:
    """The hashes `stage`'s settings had before each ADDED_SETTINGS group, newest removed first, as
    long as every removed key is at its default (a stage that uses a setting was made after it existed)."""
    settings, defaults = stage_settings(cfg, stage), stage_settings(StereokitConfig(), stage)
    hashes = []
    for group in reversed(ADDED_SETTINGS):
        if not all(_drop_if_default(settings, defaults, dotted) for dotted in group):
            break
        hashes.append(_hash(settings))
    return hashes


def made_with_settings(recorded: object, cfg: StereokitConfig, stage: str) -> bool:
    """Whether a recorded hash (a stage record's or a checkpoint's) is `cfg`'s for `stage`; artifacts
    written before per-stage hashes carry the whole config's hash, and ones written before a setting
    was added (ADDED_SETTINGS) the hash without it: both still count."""
    return recorded in (stage_config_hash(cfg, stage), config_hash(cfg), *_hashes_before_additions(cfg, stage))


def changed_settings(old: StereokitConfig, new: StereokitConfig, stage: str) -> list[str]:
    """The dotted keys among `stage`'s settings whose values differ, e.g. ['model.maxdisp']."""
    def flat(tree: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix: tree}
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}.{key}" if prefix else key).items()}

    a = flat(stage_settings(old, stage), "")
    b = flat(stage_settings(new, stage), "")
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
