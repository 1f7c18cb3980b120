"""Bundled plugins are written as a third party would: public names of cartesia_sync only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cartesia_sync

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def private_imports(source: str) -> list:
    """Every import in ``source`` that reaches past cartesia_sync's public names."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (
                    alias.name.startswith("cartesia_sync.")
                    or alias.name == "plugins"
                    or alias.name.startswith("plugins.")
                ):
                    bad.append(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "cartesia_sync":
                bad.extend(f"cartesia_sync.{a.name}" for a in node.names if a.name not in cartesia_sync.__all__)
            elif node.module.startswith("cartesia_sync.") or node.module.split(".")[0] == "plugins":
                bad.append(node.module)
    return bad


def test_the_checker_catches_private_names():
    assert private_imports("from cartesia_sync._session import Session") == ["cartesia_sync._session"]
    assert private_imports("import cartesia_sync._events") == ["cartesia_sync._events"]
    assert private_imports("from cartesia_sync import _private, hookimpl") == ["cartesia_sync._private"]
    assert private_imports("import plugins.subtitles") == ["plugins.subtitles"]
    assert private_imports("from cartesia_sync import hookimpl, Transcript\nfrom . import sibling") == []


@pytest.mark.parametrize("path", sorted(PLUGINS.glob("*.py")), ids=lambda p: p.name)
def test_bundled_plugins_import_only_public_names(path):
    assert private_imports(path.read_text()) == []


def test_plugins_package_is_installed_under_its_own_name():
    import importlib

    package = importlib.import_module("cartesia_sync_plugins")
    assert Path(package.__file__).resolve().parent == PLUGINS
    assert (PLUGINS / "py.typed").exists()
