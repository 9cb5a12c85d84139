"""params.yaml validation: unknown keys, wrong types and ranges are named."""
from __future__ import annotations

import pytest
import yaml

from echocem.io import EchoCemError
from echocem.params import deep_merge, get_key, load_params, select, set_key, validate_params
from tests.pipeline import REPO


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(REPO / "params.yaml")


def test_repository_params_are_valid(params):
    assert params["data"]["source"] in ("synthetic", "real")
    assert isinstance(params["seed"], int)


def test_tiny_params_are_valid(params):
    tiny = yaml.safe_load((REPO / "tests" / "tiny_params.yaml").read_text())
    validate_params(deep_merge(params, tiny))


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"seed": -3}, "key seed: -3 is less than the minimum of 0"),
        ({"seed": "abc"}, "key seed: 'abc' is not of type 'integer'"),
        ({"execution": {"device": "tpu"}}, "key execution.device: 'tpu' is not one of"),
        ({"execution": {"threads": {"default": 0}}}, "key execution.threads.default: 0 is less than the minimum of 1"),
        ({"data": {"surprise": 1}}, "unknown key data.surprise"),
        ({"colour": 1}, "unknown key colour"),
        ({"data": {"source": "synthetic", "raw_dir": "elsewhere"}}, "key data.raw_dir"),
    ],
)
def test_invalid_params_name_the_key(params, change, expected):
    bad = deep_merge(params, change)
    with pytest.raises(EchoCemError) as err:
        validate_params(bad, "params.yaml")
    assert "params.yaml: invalid parameters" in str(err.value)
    assert expected in str(err.value)


def test_missing_section_is_named(params):
    bad = {k: v for k, v in params.items() if k != "data"}
    with pytest.raises(EchoCemError, match="missing key data"):
        validate_params(bad)


def test_load_params_reports_file_problems(tmp_path):
    with pytest.raises(EchoCemError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(EchoCemError, match="not valid YAML"):
        load_params(broken)


def test_select_and_set_key(params):
    sub = select(params, ["seed", "data.source"])
    assert sub == {"seed": params["seed"], "data": {"source": params["data"]["source"]}}
    changed = set_key(params, "data.source", "real")
    assert get_key(changed, "data.source") == "real"
    assert get_key(params, "data.source") == "synthetic"
    assert changed is not params
    with pytest.raises(EchoCemError, match="key data.nothing not found"):
        get_key(params, "data.nothing")


def test_check_params_cli(tmp_path, params):
    from echocem.__main__ import main

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(params))
    assert main(["check-params", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deep_merge(params, {"execution": {"device": "gpu"}})))
    assert main(["check-params", str(bad)]) == 2


@pytest.mark.parametrize("raw_dir", ["data/raw/it's", "../elsewhere", "/data/raw/echocem", "data/raw/a\nb"])
def test_raw_dir_that_could_escape_the_repository_or_its_quoting_is_refused(params, raw_dir):
    bad = deep_merge(params, {"data": {"source": "real", "raw_dir": raw_dir}})
    with pytest.raises(EchoCemError, match="key data.raw_dir: .* is not allowed: folder in the real challenge layout"):
        validate_params(bad)


def test_real_data_folder_is_checked_when_params_are_loaded(tmp_path, params):
    """`source: real` with a folder that is not there stops every entry point, naming key and path."""
    from echocem.__main__ import main

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(deep_merge(params, {"data": {"source": "real", "raw_dir": "data/raw/my data"}})))
    with pytest.raises(EchoCemError, match=r"key data.raw_dir: 'data/raw/my data' does not exist \(data.source is real"):
        load_params(path)
    assert main(["check-params", str(path)]) == 2
    (tmp_path / "data" / "raw" / "my data").mkdir(parents=True)
    assert load_params(path)["data"]["raw_dir"] == "data/raw/my data"
