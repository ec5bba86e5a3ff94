"""The structure the code promises: a declared public API that first-party plugins keep to,
small functions and classes, and a tree that reads as the architecture."""

from __future__ import annotations

import ast
import subprocess

import pytest

import captioner
import captioner.testing
from conftest import ROOT

PUBLIC_MODULES = {"captioner", "captioner.testing", "captioner.testing.sdk"}
FIRST_PARTY = sorted(ROOT.glob("plugins/*/captioner_*")) + [ROOT / "captioner" / "default_plugins"]


def imports_of(path):
    """(module, names) of every captioner import in a Python file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


@pytest.mark.parametrize("package", FIRST_PARTY, ids=lambda path: path.name)
def test_first_party_plugins_use_only_the_public_api(package):
    outside = []
    for path in sorted(package.rglob("*.py")):
        for module, names in imports_of(path):
            if module.split(".")[0] != "captioner":
                continue
            if module not in PUBLIC_MODULES:
                outside.append(f"{path.relative_to(ROOT)}: from {module} import {', '.join(names)}")
            elif module == "captioner":
                outside += [f"{path.relative_to(ROOT)}: {name} is not in captioner.__all__"
                            for name in names if name not in captioner.__all__]
    assert not outside, "\n".join(outside)


def test_first_party_plugin_tests_use_only_the_public_api():
    outside = []
    for path in sorted(ROOT.glob("plugins/*/tests/*.py")):
        for module, names in imports_of(path):
            if module.split(".")[0] == "captioner" and module not in PUBLIC_MODULES:
                outside.append(f"{path.relative_to(ROOT)}: from {module} import {', '.join(names)}")
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("module", [captioner, captioner.testing], ids=lambda m: m.__name__)
def test_every_public_name_exists_and_is_documented(module):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"
        assert f"`{name}" in docs, f"{module.__name__}.{name} is public but docs/plugins.md does not mention it"


def test_no_function_over_60_lines_and_no_class_over_200():
    too_long = []
    for path in sorted((ROOT / "captioner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines > 60:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} def {node.name}: {lines} lines")
            elif isinstance(node, ast.ClassDef) and lines > 200:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


def test_the_folders_are_the_architecture_and_the_readme_table_matches_them():
    listed = subprocess.run(["git", "ls-files", "captioner"], cwd=ROOT, capture_output=True, text=True, check=True)
    folders = sorted({path.rsplit("/", 1)[0] for path in listed.stdout.split()})
    assert folders == ["captioner", "captioner/audio", "captioner/cli", "captioner/client", "captioner/default_plugins",
                       "captioner/plugins", "captioner/protocol", "captioner/server", "captioner/testing"]
    readme = (ROOT / "README.md").read_text()
    for folder in folders[1:]:
        assert f"`{folder}/`" in readme, f"README's module table does not describe {folder}/"


def test_client_code_never_imports_the_server():
    """The client reaches the embedded server only through captioner.runner."""
    for path in sorted((ROOT / "captioner" / "client").rglob("*.py")):
        source = path.read_text()
        assert "from ..server" not in source and "captioner.server" not in source, path


def test_the_example_plugin_in_the_docs_is_the_one_the_suite_tests():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    source = (ROOT / "docs" / "example-plugin" / "captioner_shout" / "__init__.py").read_text().strip()
    assert source in docs
