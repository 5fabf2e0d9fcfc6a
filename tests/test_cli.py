"""The installed console script, run as a user would: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

BUILT_COMMANDS = ["pack", "calops", "train", "calibrate", "qat", "eval", "export", "check", "compile", "infer",
                  "validate-bpu", "demo", "synth", "config", "rig", "rectify"]


def stereokit(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "stereokit"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands_that_exist() -> None:
    result = stereokit("--help")
    assert result.returncode == 0
    for name in BUILT_COMMANDS:
        assert name in result.stdout


def test_python_dash_m_works() -> None:
    result = subprocess.run([sys.executable, "-m", "stereokit", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("stereokit ")


def test_calops_json_is_consistent() -> None:
    result = stereokit("calops", "--json", "--height", "64", "--width", "128", "--set", "model.maxdisp=64")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["input"] == [64, 128]
    assert data["macs"] == sum(m["macs"] for m in data["modules"])
    assert data["params"] == sum(m["params"] for m in data["modules"])


def test_calops_default_is_the_reference_network() -> None:
    """The default config is the reference: neck blocks 3/16/3/3, about 3.9 M parameters at 544x960."""
    result = stereokit("calops", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["input"] == [544, 960]
    assert 3_000_000 < data["params"] < 4_500_000
    blocks = stereokit("config", "show")
    assert "neck_blocks:\n  - 3\n  - 16\n  - 3\n  - 3" in blocks.stdout.replace("\r", "")


def test_config_show_prints_the_resolved_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  maxdisp: 96\n")
    result = stereokit("config", "show", "--config", str(path), "--set", "seed=3")
    assert result.returncode == 0
    shown = yaml.safe_load(result.stdout)
    assert shown["model"]["maxdisp"] == 96 and shown["seed"] == 3


def test_bad_input_is_one_sentence_exit_2(tmp_path: Path) -> None:
    bad_file = tmp_path / "unreadable.yaml"
    bad_file.write_bytes(b"\xff\xfe\x00garbage")
    cases = [
        (("calops", "--height", "-32"), "must be positive"),
        (("calops", "--height", "100"), "multiple of 32"),
        (("config", "show", "--set", "model.nope=1"), "model.nope"),
        (("config", "show", "--set", "model.maxdisp=many"), "model.maxdisp"),
        (("config", "show", "--config", str(tmp_path / "none.yaml")), "none.yaml"),
        (("config", "show", "--config", str(bad_file)), "unreadable.yaml"),
    ]
    for args, needle in cases:
        result = stereokit(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
