"""The submission manifest: hashes of every input, params, code version, packages."""
from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from echocem.io import EchoCemError, file_md5
from echocem.provenance import (
    MANIFEST_FORMAT,
    build_manifest,
    canonical_json,
    code_version,
    load_manifest,
    write_manifest,
)

PARAMS = {
    "seed": 1,
    "rules": {"open": True, "close": False, "morph_size": 3},
    "submission": {"batch_size": 4, "apply_rules": True},
    "unet": {"epochs": 3},
}


@pytest.fixture()
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = {
        "unet_model": "models/unet.pt",
        "postproc_model": "models/postproc_unet.pt",
        "test_data": "data/ingested/test.npz",
        "normalization": "data/prepared/normalization.json",
    }
    for k, (role, rel) in enumerate(paths.items()):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(f"{role} bytes {k}".encode())
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "submission.csv").write_text(",0,1\nwell_7_section_1_patch_1,0,2\n")
    return tmp_path, paths


def test_manifest_records_hashes_params_code_and_packages(files):
    root, paths = files
    manifest = build_manifest("submission/submission.csv", 1, paths, PARAMS)
    assert manifest["format"] == MANIFEST_FORMAT
    sub = manifest["submission"]
    assert sub["path"] == "submission/submission.csv" and sub["rows"] == 1 and sub["columns"] == 43520
    assert sub["md5"] == hashlib.md5((root / "submission/submission.csv").read_bytes()).hexdigest()
    assert set(manifest["inputs"]) == set(paths)
    for role, rel in paths.items():
        assert manifest["inputs"][role] == {"path": rel, "md5": file_md5(root / rel)}
    params = manifest["params"]
    assert params["sections"] == ["rules", "submission"]
    assert params["values"] == {"rules": PARAMS["rules"], "submission": PARAMS["submission"]}
    recomputed = hashlib.md5(json.dumps(params["values"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert params["md5"] == recomputed == hashlib.md5(canonical_json(params["values"])).hexdigest()
    assert manifest["code"] == {"git_commit": None, "git_dirty": None}  # tmp_path is no git repository
    assert manifest["packages"]["numpy"] and manifest["packages"]["python"].startswith("3.")
    assert "torch" in manifest["packages"] and "segmentation-models-pytorch" in manifest["packages"]

    # absolute paths are recorded relative to the working directory
    absolute = {role: root / rel for role, rel in paths.items()}
    assert build_manifest(root / "submission/submission.csv", 1, absolute, PARAMS) == manifest

    write_manifest("submission/manifest.json", manifest)
    assert load_manifest("submission/manifest.json") == manifest
    first = (root / "submission/manifest.json").read_bytes()
    write_manifest("submission/manifest.json", build_manifest("submission/submission.csv", 1, paths, PARAMS))
    assert (root / "submission/manifest.json").read_bytes() == first  # no time stamps: same bytes


def test_manifest_names_missing_inputs(files):
    root, paths = files
    (root / paths["unet_model"]).unlink()
    with pytest.raises(EchoCemError, match="models/unet.pt: input 'unet_model'"):
        build_manifest("submission/submission.csv", 1, paths, PARAMS)
    with pytest.raises(EchoCemError, match="sections"):
        build_manifest("submission/submission.csv", 1, {}, PARAMS, sections=("rules", "nothing"))
    (root / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(EchoCemError, match="not an EchoCem manifest"):
        load_manifest(root / "bad.json")


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                   cwd=cwd, check=True, capture_output=True)


def test_code_version_reads_git(tmp_path):
    assert code_version(tmp_path) == {"git_commit": None, "git_dirty": None}
    git(tmp_path, "init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("one")
    git(tmp_path, "add", "src/a.py")
    git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert code_version(tmp_path) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "src" / "untracked.py").write_text("not part of the commit")
    assert code_version(tmp_path)["git_dirty"] is False
    (tmp_path / "src" / "a.py").write_text("two")
    assert code_version(tmp_path) == {"git_commit": head, "git_dirty": True}


def test_what_a_run_rewrites_does_not_make_the_tree_dirty(tmp_path):
    """dvc.lock, DVC's .gitignore files and the outputs kept in git (metrics) change
    with every run; only what decides results (code, params, dvc.yaml) counts."""
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  fit:\n    cmd: python stages/fit.py\n    deps: [stages/fit.py]\n"
        "    metrics:\n      - metrics/score.json:\n          cache: false\n")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "fit.py").write_text("print(1)\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "score.json").write_text('{"iou": 0.5}')
    (tmp_path / "metrics" / ".gitignore").write_text("/model.pt\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "a run")

    (tmp_path / "metrics" / "score.json").write_text('{"iou": 0.6}')
    (tmp_path / "metrics" / ".gitignore").write_text("/model.pt\n/other.pt\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert code_version(tmp_path)["git_dirty"] is False
    (tmp_path / "README.md").write_text("docs change nothing a stage computes\n")
    assert code_version(tmp_path)["git_dirty"] is False
    (tmp_path / "stages" / "fit.py").write_text("print(2)\n")
    assert code_version(tmp_path)["git_dirty"] is True
