"""The package's layering, read from the source with :mod:`ast` (nothing is imported).

Method modules (``atelier/methods/*.py`` other than the package and its ``base`` interface)
hold one paper each; what several of them share lives in :mod:`atelier.pipelines`, so no
method module imports another.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import atelier

PACKAGE = Path(atelier.__file__).parent
#: Modules of atelier.methods that are not methods: the package and the interface.
NOT_METHODS = {"__init__", "base"}


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the atelier modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = package.split(".")
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("atelier")}


def method_modules() -> list[Path]:
    return sorted(p for p in (PACKAGE / "methods").glob("*.py") if p.stem not in NOT_METHODS)


def test_no_method_module_imports_another():
    methods = {f"atelier.methods.{p.stem}" for p in method_modules()}
    offenders = {}
    for path in method_modules():
        imported = _imported_modules(path, "atelier.methods") & methods
        imported.discard(f"atelier.methods.{path.stem}")
        if imported:
            offenders[path.stem] = sorted(imported)
    assert not offenders, f"method modules importing other method modules: {offenders}"


def _modules_under(folder: str) -> list[tuple[Path, str]]:
    root = PACKAGE / folder
    return [(path, "atelier." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts[:-1]))
            for path in sorted(root.rglob("*.py"))]


@pytest.mark.parametrize("folder", ["pipelines", "train", "losses", "ops", "nets", "encoders"])
def test_framework_layers_do_not_import_the_methods(folder):
    offenders = {path.stem: sorted(name for name in _imported_modules(path, package)
                                   if name == "atelier.methods" or name.startswith("atelier.methods."))
                 for path, package in _modules_under(folder)}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"atelier.{folder} modules importing atelier.methods: {offenders}"


def test_task_lookup_without_cycle_or_module_class_swap():
    code = (
        "import sys, types\n"
        "from atelier.train.task import available_tasks, get_task\n"
        "import atelier\n"
        "assert type(sys.modules['atelier.train']) is types.ModuleType\n"
        "assert atelier.train is sys.modules['atelier.train.trainer'].train\n"
        "assert {'adain', 'cyclegan', 'ugatit', 'wct'} <= set(available_tasks())\n"
        "assert get_task('adain').name == 'adain'\n"
        "from atelier.train import TrainConfig\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
