"""The public surface: what __all__ exports is what the README lists and what the API reference renders."""

from __future__ import annotations

import re
from pathlib import Path

import cartesia_sync

ROOT = Path(__file__).resolve().parent.parent


def public_api_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Public API", 1)[1].split("\n## ", 1)[0]


def test_the_readme_lists_exactly_the_exported_names():
    listed = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", public_api_section()))
    listed -= {"cartesia_sync"}
    assert listed == set(cartesia_sync.__all__)


def test_every_exported_name_exists_and_implementation_modules_are_private():
    for name in cartesia_sync.__all__:
        assert hasattr(cartesia_sync, name), name
    public_modules = {"__init__", "__main__", "errors", "hookspecs", "cli", "testing"}
    for path in (ROOT / "cartesia_sync").glob("*.py"):
        assert path.stem in public_modules or path.stem.startswith("_"), f"{path.name} should be private"
    for path in (ROOT / "cartesia_sync" / "local").glob("*.py"):
        assert path.stem == "__init__" or path.stem.startswith("_"), f"local/{path.name} should be private"
    for module in ("errors", "hookspecs", "local", "testing"):
        assert f"cartesia_sync.{module}" in public_api_section()


def test_the_local_package_exports_what_engine_plugins_and_servers_need():
    import cartesia_sync.local as local

    for name in local.__all__:
        assert hasattr(local, name), name
    assert {"LocalServer", "Engine", "Recognition", "StreamOptions", "words_between"} <= set(local.__all__)


def test_the_api_reference_renders_exactly_the_exported_names(tmp_path):
    """docs/api.md renders cartesia_sync filtered by its __all__: build the site and read the anchors."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert built.returncode == 0, built.stderr
    html = (site / "api" / "index.html").read_text()
    rendered = set(re.findall(r'id="cartesia_sync\.([A-Za-z_]+)"', html)) - {"hookspecs", "local"}
    assert rendered == set(cartesia_sync.__all__)
    import cartesia_sync.local as local

    rendered_local = set(re.findall(r'id="cartesia_sync\.local\.([A-Za-z_]+)"', html))
    assert rendered_local == set(local.__all__)
