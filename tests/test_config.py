from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from stereokit.config import (ADDED_SETTINGS, StereokitConfig, changed_settings, config_hash, config_to_yaml, load_config, made_with_settings,
                              stage_config_hash, stage_settings)
from stereokit.errors import ConfigError


def test_defaults_are_the_reference_recipe() -> None:
    cfg = StereokitConfig()
    assert cfg.model.maxdisp == 192 and cfg.model.num_disparities == 12
    assert cfg.model.out_channels == [32, 32, 64, 128, 128, 16]
    assert cfg.model.groups == 32 and cfg.model.refine_levels == 4
    assert cfg.model.loss_weights == [0.3, 0.3, 0.5, 0.5, 1.0]
    assert cfg.data.crop == (256, 512) and cfg.data.mean == 128 and cfg.data.std == 128
    f = cfg.train.float
    assert (f.lr, f.weight_decay, f.warmup_epochs, f.epochs, f.batch_size) == (1e-3, 4e-5, 10, 200, 16)
    c = cfg.train.calibration
    assert (c.steps, c.observer, c.percentile) == (20, "percentile", 99.985)
    q = cfg.train.qat
    assert (q.lr, q.epochs, q.gamma) == (5e-5, 40, 0.1)
    assert (cfg.deploy.input_height, cfg.deploy.input_width, cfg.deploy.opset) == (544, 960, 21)
    assert cfg.quant.int16_modules[0] == "head.soft_argmin" and "head.refine.*.add" in cfg.quant.int16_modules


def test_yaml_file_then_set_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  maxdisp: 64\ntrain:\n  float:\n    lr: 0.01\n")
    cfg = load_config(path, ["train.float.lr=2e-3", "data.crop=[128, 256]"])
    assert cfg.model.maxdisp == 64
    assert cfg.train.float.lr == 2e-3
    assert cfg.data.crop == (128, 256)


def test_amp_off_survives_yaml_reading_it_as_false(tmp_path: Path) -> None:
    """YAML 1.1 reads a bare `off` as false; `amp: off` in a file or in --set means float32, not an error."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  float:\n    amp: off\n")
    assert load_config(path, []).train.float.amp == "off"
    assert load_config(None, ["train.float.amp=bf16", "train.float.amp=off"]).train.float.amp == "off"
    with pytest.raises(ConfigError, match="train.float.amp"):
        load_config(None, ["train.float.amp=true"])


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.maxdisp=96", "seed=7"])
    path = tmp_path / "out.yaml"
    path.write_text(config_to_yaml(cfg))
    again = load_config(path)
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert config_hash(StereokitConfig()) != config_hash(cfg)


def test_each_stage_hashes_only_the_settings_it_is_made_from() -> None:
    base = StereokitConfig()
    stages = ("float", "calibration", "qat", "export", "compile-ort")
    def changed(override: str) -> list[str]:
        other = load_config(None, [override])
        return [s for s in stages if stage_config_hash(other, s) != stage_config_hash(base, s)]

    assert changed("train.qat.lr=1e-5") == ["qat"]
    assert changed("train.float.lr=1e-2") == ["float"]
    assert changed("train.calibration.observer=minmax") == ["calibration"]
    assert changed("quant.reduce_range=false") == ["calibration", "qat", "export", "compile-ort"]
    assert changed("deploy.input_height=256") == ["export", "compile-ort"]
    assert changed("model.maxdisp=96") == list(stages)
    assert changed("device=cpu") == [] and changed("data.num_workers=0") == []  # resources change no result
    assert changed_settings(base, load_config(None, ["train.qat.lr=1e-5", "seed=3"]), "qat") == ["seed", "train.qat.lr"]
    assert changed_settings(base, load_config(None, ["train.qat.lr=1e-5"]), "float") == []


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model.maxdisp_typo=3"], "unknown config key 'model.maxdisp_typo'"),
        (["train.float.lr=fast"], "'train.float.lr'"),
        (["model.maxdisp=-16"], "'model.maxdisp'"),
        (["model.maxdisp=100"], "multiple of 16"),
        (["data.crop=[250, 512]"], "'data.crop'"),
        (["deploy.input_height=540"], "multiple of 32"),
        (["nosuchsection.key=1"], "unknown config key 'nosuchsection'"),
        (["model.maxdisp"], "expected section.key=value"),
    ],
)
def test_bad_overrides_name_the_dotted_path(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert needle in str(err.value)
    assert err.value.exit_code == 2


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"model": {"groups": "many"}}))
    with pytest.raises(ConfigError, match=r"wrong.yaml: bad value for 'model.groups'"):
        load_config(wrong)


def _older_hash(cfg: StereokitConfig, stage: str, missing: list[str]) -> str:
    """The stage hash a stereokit without the `missing` settings wrote: sha256 of its sorted, compact JSON."""
    settings = stage_settings(cfg, stage)
    for dotted in missing:
        section = next(s for s in settings if dotted.startswith(s + "."))
        *parents, leaf = dotted.removeprefix(section + ".").split(".")
        node = settings[section]
        for key in parents:
            node = node[key]
        del node[leaf]
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_a_stage_made_before_a_setting_was_added_is_not_stale_while_the_setting_keeps_its_default() -> None:
    cfg = load_config(None)
    soften = ["data.augment.soften", "data.augment.soften_prob"]
    before_soften = _older_hash(cfg, "calibration", soften)
    assert before_soften != stage_config_hash(cfg, "calibration")
    assert made_with_settings(before_soften, cfg, "calibration")
    # older still: the float stage from before init_weight and soften
    assert made_with_settings(_older_hash(cfg, "float", ["train.float.init_weight", *soften]), cfg, "float")
    # a run that asks for the new setting cannot have been made before it existed
    softened = load_config(None, ["data.augment.soften=2"])
    assert not made_with_settings(_older_hash(softened, "calibration", soften), softened, "calibration")
    assert not made_with_settings(before_soften, softened, "calibration")
    # and a setting that did change is still noticed
    assert not made_with_settings(before_soften, load_config(None, ["quant.reduce_range=false"]), "calibration")


def _leaf_keys(tree: object, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix}
    return {k for key, sub in tree.items() for k in _leaf_keys(sub, f"{prefix}.{key}" if prefix else key)}


def test_a_setting_added_since_the_key_list_is_in_added_settings() -> None:
    """Without it, every finished stage that reads the new setting's section would turn stale after an upgrade."""
    lines = (Path(__file__).parent / "config_keys.txt").read_text().splitlines()
    known = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    added = {key for group in ADDED_SETTINGS for key in group}
    keys = _leaf_keys(StereokitConfig().model_dump(mode="json"))
    assert known <= keys | added, f"settings gone from the config: {sorted(known - keys)}"
    assert keys - known <= added, f"add {sorted(keys - known - added)} to config.ADDED_SETTINGS (a group of its own)"
