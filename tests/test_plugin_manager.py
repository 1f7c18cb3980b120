"""The plugin manager: a fresh one per client, entry points, validation, listing, documentation."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pluggy
import pytest
import soundfile
from conftest import pcm

import cartesia_sync
from cartesia_sync import ConfigurationError, hookimpl
from cartesia_sync._plugin_manager import create_plugin_manager, list_plugins

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


class Site:
    """A folder on ``sys.path`` into which tests install real distributions (``*.dist-info`` with entry points).

    ``importlib.metadata`` finds them as it finds any installed distribution. Modules imported from
    the folder are forgotten when the test ends, so each test imports its plugins afresh.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def install(
        self, distribution: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.2.3"
    ) -> None:
        for module, source in modules.items():
            (self.path / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.path / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[cartesia_sync]\n{lines}")
        importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[Site]:
    path = tmp_path / "site-packages"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield Site(path)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(path)):
            del sys.modules[name]


INSTANCE_PLUGIN = """
from cartesia_sync import hookimpl

class Fake:
    seen = []

    @hookimpl
    def on_transcript(self, transcript):
        Fake.seen.append(transcript.text)

plugin = Fake()
"""

CLASS_PLUGIN = """
from cartesia_sync import hookimpl

class CountingPlugin:
    instances = []

    def __init__(self):
        self.finals = []
        CountingPlugin.instances.append(self)

    @hookimpl
    def on_transcript(self, transcript):
        if transcript.is_final:
            self.finals.append(transcript.text)
"""

MODULE_PLUGIN = """
from cartesia_sync import hookimpl

finals = []

@hookimpl
def on_transcript(transcript):
    if transcript.is_final:
        finals.append(transcript.text)
"""

FAILING_CLASS_PLUGIN = """
from cartesia_sync import hookimpl

class NeedsConfig:
    def __init__(self):
        raise RuntimeError("no configuration file at ~/.needs-config")

    @hookimpl
    def on_transcript(self, transcript):
        raise AssertionError("a plugin that was skipped is never called")
"""


def install_counting(site: Site) -> None:
    site.install(
        "cartesia-sync-counting",
        {"counting": "cartesia_sync_counting:CountingPlugin"},
        {"cartesia_sync_counting": CLASS_PLUGIN},
        version="0.4.0",
    )


def test_installed_plugins_are_loaded_from_entry_points(site, make_client):
    site.install("cartesia-sync-fake", {"fake": "cartesia_sync_fake:plugin"}, {"cartesia_sync_fake": INSTANCE_PLUGIN})
    client = make_client(load_entrypoints=True)
    assert {"name": "fake", "version": "1.2.3", "hooks": ["on_transcript"]} in client.plugins()
    with client.connect() as session:
        session.send(pcm(0.1))
    import cartesia_sync_fake

    assert client.plugin_manager.get_plugin("fake") is cartesia_sync_fake.plugin  # an instance: registered as is
    assert cartesia_sync_fake.Fake.seen == [" seg1:3200b"]
    assert not make_client(load_entrypoints=False).plugin_manager.has_plugin("fake")


def test_an_entry_point_naming_a_class_registers_one_instance_per_manager(site, make_client):
    install_counting(site)
    first = make_client(load_entrypoints=True)
    second = make_client(load_entrypoints=True)
    from cartesia_sync_counting import CountingPlugin

    mine, theirs = first.plugin_manager.get_plugin("counting"), second.plugin_manager.get_plugin("counting")
    assert isinstance(mine, CountingPlugin) and isinstance(theirs, CountingPlugin)
    assert CountingPlugin.instances == [mine, theirs]
    with first.connect() as session:
        session.send(pcm(0.1))
        session.finalize()
        session.send(pcm(0.2))
    assert not session.errors and session.text == " seg1:3200b seg2:6400b"
    assert mine.finals == [" seg1:3200b", " seg2:6400b"] and theirs.finals == []
    assert len(CountingPlugin.instances) == 2  # made once per manager, not per session or hook call
    assert {"name": "counting", "version": "0.4.0", "hooks": ["on_transcript"]} in first.plugins()
    [(plugin, dist)] = first.plugin_manager.list_plugin_distinfo()
    assert plugin is mine and dist.project_name == "cartesia-sync-counting" and dist.version == "0.4.0"
    [(plugin, dist)] = first.plugin_manager.list_plugin_distributions()
    assert plugin is mine and dist.metadata["Name"] == "cartesia-sync-counting"


def test_an_entry_point_naming_a_module_registers_the_module(site, make_client):
    site.install(
        "cartesia-sync-modplug", {"modplug": "cartesia_sync_modplug"}, {"cartesia_sync_modplug": MODULE_PLUGIN}
    )
    client = make_client(load_entrypoints=True)
    import cartesia_sync_modplug

    assert client.plugin_manager.get_plugin("modplug") is cartesia_sync_modplug
    with client.connect() as session:
        session.send(pcm(0.1))
    assert cartesia_sync_modplug.finals == [" seg1:3200b"]
    assert {"name": "modplug", "version": "1.2.3", "hooks": ["on_transcript"]} in client.plugins()


def test_a_plugin_class_that_cannot_start_is_skipped_and_the_others_still_work(site, make_client, caplog):
    site.install(
        "cartesia-sync-needs-config",
        {"needs-config": "cartesia_sync_needs_config:NeedsConfig"},
        {"cartesia_sync_needs_config": FAILING_CLASS_PLUGIN},
        version="2.0.1",
    )
    install_counting(site)
    with caplog.at_level("WARNING", logger="cartesia_sync.plugin_manager"):
        client = make_client(load_entrypoints=True)
    [warning] = [r for r in caplog.records if r.name == "cartesia_sync.plugin_manager"]
    message = warning.getMessage()
    assert warning.levelname == "WARNING"
    for part in (
        "'needs-config'",
        "cartesia-sync-needs-config 2.0.1",
        "cartesia_sync_needs_config:NeedsConfig",
        "RuntimeError: no configuration file at ~/.needs-config",
        "pip uninstall cartesia-sync-needs-config",
        "CARTESIA_SYNC_DISABLE_PLUGINS=needs-config",
        "load_entrypoints=False",
    ):
        assert part in message, part
    pm = client.plugin_manager
    assert not pm.has_plugin("needs-config") and pm.has_plugin("counting")
    [broken] = pm.broken_plugins
    assert (broken.name, broken.distribution, broken.version) == ("needs-config", "cartesia-sync-needs-config", "2.0.1")
    assert isinstance(broken.error, ConfigurationError) and isinstance(broken.error.__cause__, RuntimeError)
    listed = {item["name"]: item for item in client.plugins()}
    assert listed["needs-config"]["hooks"] == [] and "no configuration file" in listed["needs-config"]["error"]
    assert "error" not in listed["counting"]

    with client.connect() as session:
        session.send(pcm(0.1))
    assert not session.errors and session.text == " seg1:3200b"
    assert pm.get_plugin("counting").finals == [" seg1:3200b"]


def test_the_command_line_transcribes_and_lists_a_broken_plugin(site, server, tmp_path):
    site.install(
        "cartesia-sync-needs-config",
        {"needs-config": "cartesia_sync_needs_config:NeedsConfig"},
        {"cartesia_sync_needs_config": FAILING_CLASS_PLUGIN},
    )
    install_counting(site)
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, np.zeros(1600, dtype=np.int16), 16000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    env["PYTHONPATH"] = os.pathsep.join([str(site.path), env.get("PYTHONPATH", "")])

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cartesia_sync", *args], capture_output=True, text=True, timeout=60, env=env
        )

    transcribed = cli("transcribe", str(wav), "--url", server.url)
    assert transcribed.returncode == 0, transcribed.stderr
    assert transcribed.stdout == "seg1:3200b\n"
    warnings = [line for line in transcribed.stderr.splitlines() if line.startswith("cartesia-sync: warning: ")]
    assert len(warnings) == 1 and "'needs-config'" in warnings[0]  # once, though client and server load plugins
    listing = cli("plugins")
    assert listing.returncode == 0, listing.stderr
    listed = {item["name"]: item for item in json.loads(listing.stdout)}
    assert listed["counting"] == {"name": "counting", "version": "0.4.0", "hooks": ["on_transcript"]}
    assert listed["needs-config"]["version"] == "1.2.3" and listed["needs-config"]["hooks"] == []
    assert "RuntimeError: no configuration file" in listed["needs-config"]["error"]
    assert "CARTESIA_SYNC_DISABLE_PLUGINS=needs-config" in listed["needs-config"]["error"]


BROKEN_KINDS = {
    "import fails": (
        "cartesia_sync_bad:plugin",
        "raise ImportError('missing dependency xyz')\n",
        "importing cartesia_sync_bad:plugin failed (ImportError: missing dependency xyz)",
    ),
    "class needs arguments": (
        "cartesia_sync_bad:Configured",
        """
        from cartesia_sync import hookimpl

        class Configured:
            def __init__(self, path):
                self.path = path

            @hookimpl
            def on_transcript(self, transcript):
                pass
        """,
        "cartesia_sync_bad:Configured() failed (TypeError",
    ),
    "names a function": (
        "cartesia_sync_bad:make_plugin",
        "def make_plugin():\n    return None\n",
        "is a function with no @cartesia_sync.hookimpl methods",
    ),
    "class without hooks": (
        "cartesia_sync_bad:Nothing",
        "class Nothing:\n    pass\n",
        "is an instance of Nothing with no @cartesia_sync.hookimpl methods",
    ),
    "misspelt hook": (
        "cartesia_sync_bad:Typo",
        """
        from cartesia_sync import hookimpl

        class Typo:
            @hookimpl
            def on_transcrpit(self, transcript):
                pass
        """,
        "implements on_transcrpit: no such hook",
    ),
    "wrong argument": (
        "cartesia_sync_bad:BadArgs",
        """
        from cartesia_sync import hookimpl

        class BadArgs:
            @hookimpl
            def on_transcript(self, chunk):
                pass
        """,
        "chunk",
    ),
    "hook wrapper": (
        "cartesia_sync_bad:Wrapper",
        """
        from cartesia_sync import hookimpl

        class Wrapper:
            @hookimpl(wrapper=True)
            def on_transcript(self, transcript):
                yield
        """,
        "hook wrapper",
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN_KINDS))
def test_every_kind_of_broken_entry_point_is_skipped_and_listed(site, kind, caplog):
    value, source, reason = BROKEN_KINDS[kind]
    site.install("cartesia-sync-bad", {"bad": value}, {"cartesia_sync_bad": source})
    install_counting(site)
    with caplog.at_level("WARNING", logger="cartesia_sync.plugin_manager"):
        pm = create_plugin_manager()
    [broken] = pm.broken_plugins
    assert broken.name == "bad" and reason in str(broken.error), str(broken.error)
    assert any(reason in r.getMessage() and "cartesia-sync-bad" in r.getMessage() for r in caplog.records)
    assert pm.get_plugin("bad") is None and pm.has_plugin("counting")
    assert [dist.project_name for _, dist in pm.list_plugin_distinfo()] == ["cartesia-sync-counting"]
    assert [item["name"] for item in list_plugins(pm)] == ["bad", "counting"]
    pm.check_pending()  # nothing of the skipped plugin is left behind


def test_blocked_entry_points_are_not_even_imported(site, make_client, monkeypatch):
    site.install(
        "cartesia-sync-explodes",
        {"explodes": "cartesia_sync_explodes:plugin"},
        {"cartesia_sync_explodes": "raise RuntimeError('imported although blocked')\n"},
    )
    install_counting(site)
    monkeypatch.setenv("CARTESIA_SYNC_DISABLE_PLUGINS", "explodes, counting")
    client = make_client(load_entrypoints=True)
    assert [item["name"] for item in client.plugins()] == ["recorder"]
    assert client.plugin_manager.broken_plugins == []
    assert "cartesia_sync_explodes" not in sys.modules and "cartesia_sync_counting" not in sys.modules
    monkeypatch.setenv("CARTESIA_SYNC_DISABLE_PLUGINS", "explodes")
    assert make_client(load_entrypoints=True).plugin_manager.has_plugin("counting")


def test_the_pyproject_entry_point_in_the_plugin_guide_loads_the_guide_s_class(tmp_path, site, make_client, capsys):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    example = docs.split("```python", 1)[1].split("```", 1)[0]
    table = docs.split("```toml", 1)[1].split("```", 1)[0]
    assert "[project.entry-points.cartesia_sync]" in table
    project = tmp_path / "cartesia-sync-print-finals"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "cartesia-sync-print-finals"\nversion = "0.1.0"\n\n' + table
    )
    (site.path / "cartesia_sync_print_finals.py").write_text(example.split("\nclient = ", 1)[0])
    built = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "egg_info", "--egg-base", str(site.path)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr  # setuptools writes the installed metadata, entry points included
    importlib.invalidate_caches()
    client = make_client(load_entrypoints=True)
    assert {"name": "print-finals", "version": "0.1.0", "hooks": ["on_transcript"]} in client.plugins()
    with client.connect() as session:
        session.send(pcm(0.1))
    assert capsys.readouterr().out == " seg1:3200b"


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
    for name in (
        "Client",
        "Session",
        "transcribe",
        "hookimpl",
        "Transcript",
        "Word",
        "FlushDone",
        "Done",
        "CartesiaSyncError",
        "ConfigurationError",
        "AuthenticationError",
        "RateLimitError",
        "ConnectError",
        "ServerError",
        "ProtocolError",
        "StreamTimeout",
        "SessionClosedError",
        "AudioFormatError",
        "PluginError",
    ):
        assert name in cartesia_sync.__all__ and hasattr(cartesia_sync, name)
    import builtins

    assert not [name for name in cartesia_sync.__all__ if hasattr(builtins, name)]


def test_package_is_typed():
    assert (Path(cartesia_sync.__file__).parent / "py.typed").exists()


def test_the_engine_example_in_the_plugin_guide_runs():
    from cartesia_sync.local import LocalServer
    from cartesia_sync.local._server import engine_registry

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


def test_pluggy_tracing_and_monitoring_see_every_hook_call(make_client, recorder):
    """Dispatch goes through pluggy: hook-call monitoring and pm.trace see each plugin's call, a failing one too."""

    class Failing:
        name = "failing"

        @hookimpl
        def on_transcript(self, transcript):
            raise RuntimeError("boom")

    client = make_client(plugins=[recorder, Failing()], raise_errors=False)
    seen = []
    client.plugin_manager.add_hookcall_monitoring(
        lambda hook_name, impls, kwargs: seen.append((hook_name, tuple(i.plugin_name for i in impls))),
        lambda outcome, hook_name, impls, kwargs: None,
    )
    traced = []
    client.plugin_manager.trace.root.setwriter(traced.append)
    undo = client.plugin_manager.enable_tracing()
    try:
        with client.connect() as session:
            session.send(pcm(0.1))
    finally:
        undo()
    transcript_calls = [plugins for hook, plugins in seen if hook == "on_transcript"]
    assert ("failing",) in transcript_calls and ("recorder",) in transcript_calls
    assert transcript_calls.index(("failing",)) < transcript_calls.index(("recorder",))  # newest first, both called
    assert recorder.payloads("on_transcript")
    assert any("on_transcript" in line for line in traced)
    assert any(hook == "on_error" for hook, _ in seen)  # the failure was reported through pluggy too
