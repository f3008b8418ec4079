"""dvc.yaml lists, for every stage, the package modules its script imports, so a code change reruns exactly the stages it touches."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def shapnoise_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shapnoise."):
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("shapnoise."))
    return modules


def module_closure(script: Path) -> set[str]:
    """Return the src/ paths of every shapnoise module the script imports, directly or through other modules."""
    seen, pending = set(), list(shapnoise_imports(script))
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending.extend(shapnoise_imports(REPO / "src" / (module.replace(".", "/") + ".py")))
    return {"src/" + module.replace(".", "/") + ".py" for module in seen}


def stage_definitions():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        yield name, stage.get("do", stage)


@pytest.mark.parametrize("name, stage", list(stage_definitions()), ids=[n for n, _ in stage_definitions()])
def test_stage_deps_cover_imports(name, stage):
    script = REPO / "stages" / f"{name}.py"
    assert f"stages/{name}.py" in stage["deps"]
    missing = module_closure(script) - set(stage["deps"])
    assert not missing, f"dvc.yaml stage {name} lacks deps {sorted(missing)}"


@pytest.mark.parametrize("name, stage", list(stage_definitions()), ids=[n for n, _ in stage_definitions()])
def test_stage_deps_have_no_unused_modules(name, stage):
    listed = {dep for dep in stage["deps"] if dep.startswith("src/")}
    unused = listed - module_closure(REPO / "stages" / f"{name}.py")
    assert not unused, f"dvc.yaml stage {name} lists modules its script never imports: {sorted(unused)}"
