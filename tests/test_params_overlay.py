"""`python -m echocem set-params`: presets and KEY=VALUE change exactly the keys named, keep the
file's comments and layout, refuse unknown keys and invalid values, and leave the file as it was
when they refuse."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from echocem.io import EchoCemError
from echocem.params import get_key, load_params
from echocem.params_overlay import load_preset, parse_assignment, set_params
from tests.pipeline import REPO

PRESETS = sorted((REPO / "settings").glob("*.yaml"))


@pytest.fixture()
def params_copy(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b), "the file's line layout changed"
    return [(x, y) for x, y in zip(a, b) if x != y]


def test_assignment_changes_that_value_and_nothing_else(params_copy):
    before_text = params_copy.read_text()
    before = load_params(params_copy)
    changes = set_params(params_copy, [("unet.profiles.small.train.epochs", 3, "test"),
                                       ("preprocess.val_wells", [4, 5], "test")])
    after = load_params(params_copy)
    assert changes == [("unet.profiles.small.train.epochs", before["unet"]["profiles"]["small"]["train"]["epochs"], 3),
                       ("preprocess.val_wells", before["preprocess"]["val_wells"], [4, 5])]
    assert after["unet"]["profiles"]["small"]["train"]["epochs"] == 3
    assert after["preprocess"]["val_wells"] == [4, 5]
    # everything else is the same data, and only the two lines changed, comments kept
    after["unet"]["profiles"]["small"]["train"]["epochs"] = before["unet"]["profiles"]["small"]["train"]["epochs"]
    after["preprocess"]["val_wells"] = before["preprocess"]["val_wells"]
    assert after == before
    lines = _changed_lines(before_text, params_copy.read_text())
    assert len(lines) == 2
    old, new = lines[1]
    assert "val_wells: [4, 5]" in new and old.split("#")[1] == new.split("#")[1]


def test_unknown_key_is_named_and_the_file_is_untouched(params_copy):
    before = params_copy.read_bytes()
    with pytest.raises(EchoCemError, match=r"my.yaml: key unet.profiles.small.train.epoch: params.yaml has no "
                                           r"unet.profiles.small.train.epoch"):
        set_params(params_copy, [("unet.profiles.small.train.epochs", 2, "my.yaml"),
                                 ("unet.profiles.small.train.epoch", 2, "my.yaml")])
    assert params_copy.read_bytes() == before


def test_invalid_value_is_refused_by_the_schema_and_the_file_is_untouched(params_copy):
    before = params_copy.read_bytes()
    with pytest.raises(EchoCemError, match="key unet.profiles.small.train.epochs: 0 is less than the minimum of 1"):
        set_params(params_copy, [("unet.profiles.small.train.epochs", 0, "test")])
    with pytest.raises(EchoCemError, match="unet.profiles is a section"):
        set_params(params_copy, [("unet.profiles", 1, "test")])
    assert params_copy.read_bytes() == before


def test_parse_assignment():
    assert parse_assignment("a.b=2") == ("a.b", 2)
    assert parse_assignment("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_assignment("a.b=full") == ("a.b", "full")
    assert parse_assignment("a.b=null") == ("a.b", None)
    with pytest.raises(EchoCemError, match="not KEY=VALUE"):
        parse_assignment("=2")


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_shipped_presets_apply_to_the_shipped_params(preset, params_copy):
    values = load_preset(preset)
    set_params(params_copy, [(k, v, preset.name) for k, v in values.items()])
    after = yaml.safe_load(params_copy.read_text())
    for dotted, value in values.items():
        assert get_key(after, dotted) == value, dotted


def test_cli_applies_in_order_and_reports(params_copy):
    preset = REPO / "settings" / "cpu-real-size.yaml"
    out = subprocess.run([sys.executable, "-m", "echocem", "set-params", "--params", str(params_copy), str(preset),
                          "unet_oof.epochs.small=2", "simulate.size=full"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "simulate.size: 'small' -> 'full'" in out.stdout
    after = load_params(params_copy)
    assert after["unet_oof"]["epochs"]["small"] == 2  # the later override wins over the preset
    assert after["simulate"]["size"] == "full"
    bad = subprocess.run([sys.executable, "-m", "echocem", "set-params", "--params", str(params_copy), "nothing.here=1"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "params.yaml has no nothing" in bad.stderr


def test_a_bad_preset_file_is_refused_naming_it(tmp_path) -> None:
    """load_preset shares params.yaml's reader: a missing file, bad YAML, a list or an empty mapping
    each raise naming the file, before params.yaml is touched."""
    cases = {"missing.yaml": (None, "preset file not found"), "bad.yaml": ("a: [1,\n", "not valid YAML"),
             "list.yaml": ("- unet.epochs.small: 2\n", "expected a mapping at the top level"),
             "empty.yaml": ("{}\n", "got an empty one")}
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(EchoCemError, match=message) as info:
            load_preset(path)
        assert name in str(info.value)
