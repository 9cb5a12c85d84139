"""The README's real-data steps, followed literally on a small dataset in the real layout.

The dataset is written by the simulator into a folder outside the copy (as a
download would be), copied to data/raw/echocem, then the README's params block
is merged into params.yaml and its bash block is run line by line. The run ends
with a clean audit whose chain starts at the `dvc add`-ed raw data.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from echocem.params import deep_merge
from tests.pipeline import BIN, REPO, dry_run_stages, dvc_stale_stages, make_pipeline_copy, run, tool_env

pytestmark = pytest.mark.slow


def readme_blocks(language: str) -> list[str]:
    """The ```<language> blocks of the README's real-data section, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Run on the real challenge data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_readme_real_data_steps_end_with_a_clean_audit(tmp_path):
    root = make_pipeline_copy(tmp_path / "copy")
    download = tmp_path / "download"
    run([sys.executable, "stages/simulate.py", "--params", "params.yaml", "--out", str(download)], root)
    shutil.copytree(download, root / "data" / "raw" / "echocem")

    (params_block,) = readme_blocks("yaml")
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, yaml.safe_load(params_block)),
                                                     sort_keys=False))
    (commands,) = readme_blocks("bash")
    outputs = []
    for line in commands.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        tool = {"dvc": str(BIN / "dvc"), "snakemake": str(BIN / "snakemake"), "python": sys.executable}[argv[0]]
        proc = subprocess.run([tool, *argv[1:]], cwd=root, env=tool_env(cwd=root), capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, f"$ {line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)

    audit = outputs[-1]
    assert audit.splitlines()[-1].startswith("OK: ")
    assert "chain: raw data data/raw/echocem.dvc -> ingest" in audit
    assert "raw data not versioned" not in audit
    assert (root / "data" / "raw" / "echocem.dvc").is_file()
    assert dvc_stale_stages(root) == set() and dry_run_stages(root) == set()
