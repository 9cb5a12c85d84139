"""Every stage's deps cover exactly the package code its entry script runs.

The import closure of each stage's entry script inside the package is computed
from the source (ast: `import`, `from ... import`, relative imports, imports
inside functions), with the `__init__.py` of every package on the way. A module
missing from the stage's deps would let dvc.lock vouch for outputs the current
code would not produce; a module declared but never imported reruns the stage
for nothing. Both fail, naming the stage and the module.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from echocem.dag import covers, load_pipeline

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "echocem"


def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def imported_modules(path: Path, package: str) -> set[str]:
    """Dotted names a file imports (and, for `from m import n`, `m.n`: n may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] == PACKAGE}


def import_closure(entry: Path) -> set[str]:
    """Package files (repo-relative) an entry script runs, directly or not."""
    seen: set[Path] = set()
    todo = [(entry, "")]
    while todo:
        path, package = todo.pop()
        for name in imported_modules(path, package):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # the packages on the way run their __init__
                found = module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    seen.add(found)
                    owner = ".".join(parts[:i]) if found.name == "__init__.py" else ".".join(parts[: i - 1])
                    todo.append((found, owner))
    return {p.relative_to(REPO).as_posix() for p in seen}


def _entry(stage) -> str:
    scripts = [d for d in stage.deps if d.startswith("stages/") and d.endswith(".py")]
    assert len(scripts) == 1, f"stage {stage.name}: expected one entry script among its deps, got {scripts}"
    assert scripts[0] in stage.cmd, f"stage {stage.name}: its command does not run {scripts[0]}"
    return scripts[0]


STAGES = load_pipeline(REPO)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_the_import_closure(name):
    stage = STAGES[name]
    closure = import_closure(REPO / _entry(stage))
    missing = sorted(f for f in closure if not any(covers(d, f) for d in stage.deps))
    assert not missing, f"stage {name}: imports {', '.join(missing)} but does not list it in its deps (dvc.yaml)"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_list_no_package_code_the_stage_does_not_run(name):
    stage = STAGES[name]
    closure = import_closure(REPO / _entry(stage))
    unused = sorted(d for d in stage.deps if d.startswith(f"src/{PACKAGE}/")
                    and not any(covers(d, f) for f in closure))
    assert not unused, f"stage {name}: lists {', '.join(unused)} in its deps but never imports it"


def test_closure_follows_relative_and_nested_imports(tmp_path, monkeypatch):
    """The closure itself, on a package the test writes."""
    pkg = tmp_path / "src" / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from echocem import c\n")
    (pkg / "c.py").write_text("import json\n")
    (pkg / "unused.py").write_text("")
    entry = tmp_path / "stage.py"
    entry.write_text("from echocem.sub.a import thing\n")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "SRC", tmp_path / "src")
    monkeypatch.setattr(module, "REPO", tmp_path)
    assert import_closure(entry) == {
        "src/echocem/__init__.py", "src/echocem/sub/__init__.py", "src/echocem/sub/a.py",
        "src/echocem/sub/b.py", "src/echocem/c.py",
    }
