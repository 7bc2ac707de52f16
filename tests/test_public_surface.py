"""The package's public surface: every module says in `__all__` what other modules and users import from it, and the
top-level package exports what the README shows."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import modeling_ast

README = Path(__file__).resolve().parents[1] / "README.md"
MODULES = sorted(
    info.name for info in pkgutil.walk_packages(modeling_ast.__path__, prefix="modeling_ast.") if not info.ispkg
) + ["modeling_ast", "modeling_ast.conversion", "modeling_ast.tagging", "modeling_ast.training"]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_lists_its_public_names(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), exported
    assert not [item for item in exported if item.startswith("_")], exported
    assert not [item for item in exported if not hasattr(module, item)], exported


def test_package_exports_what_the_readme_shows():
    readme = README.read_text(encoding="utf-8")
    shown = {
        item.strip()
        for imports in re.findall(r"^from modeling_ast import (.+)$", readme, flags=re.MULTILINE)
        for item in imports.split("#")[0].split(",")
    }
    submodules = {item for item in shown if importlib.util.find_spec(f"modeling_ast.{item}") is not None}
    assert shown - submodules <= set(modeling_ast.__all__)
    assert not [item for item in modeling_ast.__all__ if f"`{item}`" not in readme]
