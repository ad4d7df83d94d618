"""The package's modules import each other one way: checks <- messages <- codec."""

from __future__ import annotations

import ast
from pathlib import Path

import infer_protocol

PACKAGE = Path(infer_protocol.__file__).parent


def sibling_imports(module: str) -> set[str]:
    """The package modules that `module` imports (relative or absolute, at any depth)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found |= {alias.name for alias in node.names}
            elif node.module and node.module.startswith("infer_protocol."):
                found.add(node.module.split(".")[1])
    return found


def test_imports_run_one_way() -> None:
    assert sibling_imports("checks") == set()
    assert sibling_imports("defaults") == set()
    assert sibling_imports("messages") == {"checks"}
    assert sibling_imports("codec") == {"checks", "messages"}
