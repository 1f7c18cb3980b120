"""The plugin manager: a fresh one per client, entry points, validation, listing, documentation."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pluggy
import pytest

import cartesia_sync
from cartesia_sync import ConfigurationError, hookimpl
from cartesia_sync.plugin_manager import create_plugin_manager, list_plugins

from conftest import pcm

ROOT = Path(__file__).resolve().parent.parent


class Named:
    name = "named-plugin"

    @hookimpl
    def on_transcript(self, transcript):
        pass


def test_each_client_has_its_own_manager():
    a = cartesia_sync.Client(url="ws://127.0.0.1:9/x", plugins=[Named()], load_entrypoints=False)
    b = cartesia_sync.Client(url="ws://127.0.0.1:9/x", load_entrypoints=False)
    assert a.plugin_manager is not b.plugin_manager
    assert a.plugin_manager.has_plugin("named-plugin")
    assert not b.plugin_manager.has_plugin("named-plugin")


def test_listing_names_versions_and_hooks():
    pm = create_plugin_manager([Named()], load_entrypoints=False)
    assert list_plugins(pm) == [{"name": "named-plugin", "version": None, "hooks": ["on_transcript"]}]


def test_unknown_hook_is_refused():
    class Typo:
        @hookimpl
        def on_transcrpit(self, transcript):
            pass

    with pytest.raises(ConfigurationError, match="on_transcrpit"):
        create_plugin_manager([Typo()], load_entrypoints=False)


def test_wrong_argument_name_is_refused():
    class BadArgs:
        @hookimpl
        def on_transcript(self, chunk):
            pass

    with pytest.raises(ConfigurationError, match="chunk"):
        create_plugin_manager([BadArgs()], load_entrypoints=False)


def test_hook_wrappers_are_refused():
    class Wrapper:
        name = "wrapper"

        @hookimpl(wrapper=True)
        def on_transcript(self, transcript):
            yield

    with pytest.raises(ConfigurationError, match="wrapper"):
        create_plugin_manager([Wrapper()], load_entrypoints=False)


def test_same_plugin_twice_is_refused():
    plugin = Named()
    with pytest.raises(ConfigurationError, match="register"):
        create_plugin_manager([plugin, plugin], load_entrypoints=False)


def test_blocked_names_are_not_registered(monkeypatch):
    monkeypatch.setenv("CARTESIA_SYNC_DISABLE_PLUGINS", "named-plugin, other")
    pm = create_plugin_manager([Named()], load_entrypoints=False)
    assert list_plugins(pm) == []
    assert pm.is_blocked("other")


def install_fake_distribution(root: Path, module_source: str, module: str) -> None:
    """Write a real installed distribution (dist-info with an entry point) into a sys.path folder."""
    (root / f"{module}.py").write_text(module_source)
    info = root / "cartesia_sync_fake-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cartesia-sync-fake\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[cartesia_sync]\nfake = {module}:plugin\n")


FAKE_PLUGIN = """
from cartesia_sync import hookimpl

class Fake:
    seen = []

    @hookimpl
    def on_transcript(self, transcript):
        Fake.seen.append(transcript.text)

plugin = Fake()
"""


def test_installed_plugins_are_loaded_from_entry_points(tmp_path, monkeypatch, make_client, server):
    install_fake_distribution(tmp_path, FAKE_PLUGIN, "cartesia_sync_fake")
    monkeypatch.syspath_prepend(str(tmp_path))
    client = make_client(load_entrypoints=True)
    assert {"name": "fake", "version": "1.2.3", "hooks": ["on_transcript"]} in client.plugins()
    with client.connect() as session:
        session.send(pcm(0.1))
    import cartesia_sync_fake

    assert cartesia_sync_fake.Fake.seen == [" seg1:3200b"]
    assert not make_client(load_entrypoints=False).plugin_manager.has_plugin("fake")


def test_broken_entry_point_gives_a_clear_error(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "raise ImportError('missing dependency xyz')\n", "cartesia_sync_broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="CARTESIA_SYNC_DISABLE_PLUGINS") as caught:
        cartesia_sync.Client(url="ws://127.0.0.1:9/x")
    assert "missing dependency xyz" in str(caught.value)
    monkeypatch.setenv("CARTESIA_SYNC_DISABLE_PLUGINS", "fake")
    cartesia_sync.Client(url="ws://127.0.0.1:9/x")  # blocked by name: not even imported


def test_register_is_refused_after_the_first_session(make_client):
    client = make_client()
    assert client.register(Named()) == "named-plugin"
    with client.connect() as session:
        session.send(pcm(0.1))
    with pytest.raises(RuntimeError, match="before the first connect"):
        client.register(type("Late", (), {"name": "late"})())


def test_trace_env_logs_hook_calls(make_client, monkeypatch, caplog):
    monkeypatch.setenv("CARTESIA_SYNC_TRACE_HOOKS", "1")
    with caplog.at_level("DEBUG", logger="cartesia_sync.hooks"):
        with make_client().connect() as session:
            session.send(pcm(0.1))
    assert any("on_transcript" in r.getMessage() and r.name == "cartesia_sync.hooks" for r in caplog.records)


def test_every_hook_is_documented_for_plugin_authors():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    headings = set(re.findall(r"^### (\S+\(.*\))$", docs, flags=re.M))
    pm = create_plugin_manager(load_entrypoints=False)
    expected = set()
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None:
            expected.add(f"{name}({', '.join(caller.spec.argnames)})")
    assert expected and headings == expected


def test_every_hookspec_has_a_docstring_naming_its_thread():
    from cartesia_sync import hookspecs

    tree = ast.parse(Path(hookspecs.__file__).read_text())
    specs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert len(specs) >= 6
    for spec in specs:
        doc = ast.get_docstring(spec) or ""
        assert "thread" in doc and ":param" in doc and "versionadded" in doc, spec.name
        if spec.name.startswith("on_"):
            assert ":param session:" in doc, spec.name


def test_public_api_names():
    for name in ("Client", "Session", "transcribe", "hookimpl", "Transcript", "Word", "FlushDone", "Done",
                 "CartesiaSyncError", "ConfigurationError", "AuthenticationError", "RateLimitError", "ConnectError",
                 "ServerError", "ProtocolError", "StreamTimeout", "SessionClosedError", "AudioFormatError",
                 "PluginError"):
        assert name in cartesia_sync.__all__ and hasattr(cartesia_sync, name)
    import builtins

    assert not [name for name in cartesia_sync.__all__ if hasattr(builtins, name)]


def test_package_is_typed():
    assert (Path(cartesia_sync.__file__).parent / "py.typed").exists()


def test_the_engine_example_in_the_plugin_guide_runs():
    from cartesia_sync.local import LocalServer
    from cartesia_sync.local.server import engine_registry

    docs = (ROOT / "docs" / "plugins.md").read_text()
    example = docs.split("### register_engines(register)", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(example, "docs/plugins.md", "exec"), namespace)
    registry = engine_registry(load_entrypoints=False)
    namespace["ShoutingPlugin"]().register_engines(registry.register)
    engine = registry.create("shouting")
    with LocalServer(engine, load_entrypoints=False) as server:
        client = cartesia_sync.Client(url=server.url, load_entrypoints=False)
        with client.connect() as session:
            session.send(pcm(0.5))
            session.finalize()
            session.send(pcm(0.25))
    assert session.text == " hello hello"
    assert [(w.start, w.end) for w in session.words] == [(0.0, 0.5), (0.5, 0.75)]
