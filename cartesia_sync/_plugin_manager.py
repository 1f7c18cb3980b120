"""Plugin manager factory, plugin listing, and the one function that calls hooks.

There is no global plugin manager: every :class:`~cartesia_sync.Client` builds
its own with :func:`create_plugin_manager`. Every hook call in the library goes
through :meth:`HookDispatcher.emit`, which calls each plugin's implementation
on its own (through a pluggy hook caller for that plugin alone) so that one
failing plugin cannot silence the others or kill the thread that dispatches,
while pluggy's tracing (``pm.trace``, ``enable_tracing``) and hook-call
monitoring (``add_hookcall_monitoring``) see every call.
``$CARTESIA_SYNC_TRACE_HOOKS`` turns on such monitoring, logging each call at
DEBUG on the ``cartesia_sync.hooks`` logger.

Installed plugins (the ``cartesia_sync`` entry-point group) are loaded by
:func:`create_plugin_manager` itself, not by pluggy: an entry point may name a
class, which is instantiated, and one that cannot be loaded is skipped with a
warning and listed as broken instead of breaking every client.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import traceback
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .errors import CartesiaSyncError, ConfigurationError, PluginError
from .hookspecs import PROJECT_NAME

__all__ = [
    "create_plugin_manager",
    "list_plugins",
    "HookDispatcher",
    "plugin_name_of",
    "BrokenPlugin",
    "CartesiaSyncPluginManager",
]

logger = logging.getLogger("cartesia_sync.plugin_manager")
trace_logger = logging.getLogger("cartesia_sync.hooks")

DISABLE_ENV = "CARTESIA_SYNC_DISABLE_PLUGINS"
TRACE_ENV = "CARTESIA_SYNC_TRACE_HOOKS"


def plugin_name_of(plugin: object) -> str | None:
    """The name a plugin object asks to be registered under (its ``name`` attribute)."""
    name = getattr(plugin, "name", None)
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin that could not be loaded, and was skipped.

    :ivar name: the entry point's name (what ``$CARTESIA_SYNC_DISABLE_PLUGINS`` blocks).
    :ivar value: what the entry point names, e.g. ``"cartesia_sync_foo:FooPlugin"``.
    :ivar distribution: the name of the distribution that declares it.
    :ivar version: that distribution's version.
    :ivar error: what went wrong and what to do, as a :class:`ConfigurationError`
        (the original exception, if any, is its ``__cause__``).
    """

    name: str
    value: str
    distribution: str
    version: str | None
    error: ConfigurationError


class _Distribution:
    """An ``importlib.metadata`` distribution with pkg_resources' ``project_name``, as pluggy lists them."""

    __slots__ = ("_dist",)

    def __init__(self, dist: importlib.metadata.Distribution) -> None:
        self._dist = dist

    @property
    def project_name(self) -> str:
        return str(self._dist.metadata["name"])

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._dist, attr)


class CartesiaSyncPluginManager(pluggy.PluginManager):
    """pluggy's plugin manager, with the bookkeeping of the entry points this project loads itself.

    :meth:`list_plugin_distinfo` (and ``list_plugin_distributions``) include the
    installed plugins loaded by :func:`create_plugin_manager`, as they would
    had pluggy loaded them; :attr:`broken_plugins` lists those it skipped.
    """

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self._entry_point_distributions: list[tuple[object, importlib.metadata.Distribution]] = []
        #: Installed plugins that could not be loaded, in the order they were tried.
        self.broken_plugins: list[BrokenPlugin] = []

    def list_plugin_distinfo(self) -> list[tuple[Any, Any]]:
        """``(plugin, distribution)`` pairs of every plugin loaded from an entry point."""
        return [
            *super().list_plugin_distinfo(),
            *((plugin, _Distribution(dist)) for plugin, dist in self._entry_point_distributions),
        ]

    def list_plugin_distributions(self) -> list[tuple[Any, importlib.metadata.Distribution]]:
        """Like :meth:`list_plugin_distinfo`, with plain ``importlib.metadata`` distributions."""
        base = super().list_plugin_distributions() if hasattr(pluggy.PluginManager, "list_plugin_distributions") else []
        return [*base, *self._entry_point_distributions]

    def _record_distribution(self, plugin: object, dist: importlib.metadata.Distribution) -> None:
        self._entry_point_distributions.append((plugin, dist))


def create_plugin_manager(plugins: Iterable[object] = (), load_entrypoints: bool = True) -> CartesiaSyncPluginManager:
    """Build a fresh plugin manager with the hook specs and the given plugins.

    :param plugins: plugin objects (instances or modules) to register, in order.
    :param load_entrypoints: also load installed plugins from the
        ``cartesia_sync`` entry-point group, except those named in
        ``$CARTESIA_SYNC_DISABLE_PLUGINS`` (comma-separated). An entry point
        naming a class registers one instance of it (made with no arguments);
        a module or any other object is registered as is. An installed plugin
        that cannot be loaded is skipped with a WARNING log naming its
        distribution and the fix, and listed in the manager's
        ``broken_plugins`` (and by :func:`list_plugins`).
    :raises ConfigurationError: a plugin in ``plugins`` is invalid: it
        implements a hook that does not exist, takes an argument the hook does
        not have, or uses a hook wrapper.
    """
    pm = CartesiaSyncPluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in filter(None, (part.strip() for part in os.environ.get(DISABLE_ENV, "").split(","))):
        pm.set_blocked(name)
    if load_entrypoints:
        _load_entry_points(pm)
    for plugin in plugins:
        register_plugin(pm, plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc
    if os.environ.get(TRACE_ENV):
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
    return pm


def _trace_before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
    names = ", ".join(repr(impl.plugin_name) for impl in reversed(impls))
    trace_logger.debug("calling %s of plugin %s", hook_name, names)


def _trace_after(
    outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
) -> None:
    if outcome.exception is not None:
        trace_logger.debug("%s raised %s: %s", hook_name, type(outcome.exception).__name__, outcome.exception)


# The project loads its entry points itself instead of calling pluggy's load_setuptools_entrypoints(),
# which registers the very object an entry point names: a class (what plugin authors naturally write,
# `foo = "cartesia_sync_foo:FooPlugin"`) would be registered unbound, and every hook call would fail.
# It also lets one entry point that fails to import stop the loading, and so every client. The loop
# below otherwise mirrors pluggy's: blocked and already registered names are skipped before importing,
# plugins are registered under the entry point's name, and their distribution is recorded.
#: Broken entry points already warned about in this process (``(name, value)``).
_warned: set[tuple[str, str]] = set()


def _load_entry_points(pm: CartesiaSyncPluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=PROJECT_NAME):
        if pm.is_blocked(ep.name):
            logger.debug("installed plugin %r is blocked by %s; not loaded", ep.name, DISABLE_ENV)
            continue
        if pm.has_plugin(ep.name):
            logger.debug("installed plugin %r is already registered; entry point %s skipped", ep.name, ep.value)
            continue
        dist = ep.dist
        try:
            plugin = _plugin_of(pm, ep)
        except ConfigurationError as exc:
            dist_name = str(dist.metadata["name"]) if dist is not None else "an unknown distribution"
            version = dist.version if dist is not None else None
            reason = " ".join(str(exc).split())
            error = ConfigurationError(
                f"the installed cartesia_sync plugin {ep.name!r} (entry point {ep.name} = {ep.value} of "
                f"{dist_name}{' ' + version if version else ''}) was skipped: {reason}. Fix or upgrade {dist_name}, "
                f"uninstall it (pip uninstall {dist_name}), block it with {DISABLE_ENV}={ep.name}, "
                "or load no installed plugins (load_entrypoints=False; --no-plugins on the command line)"
            )
            error.__cause__ = exc.__cause__
            pm.broken_plugins.append(BrokenPlugin(ep.name, ep.value, dist_name, version, error))
            # Every client builds its own manager: warn once per process and entry point, not per client.
            level = logging.DEBUG if (ep.name, ep.value) in _warned else logging.WARNING
            _warned.add((ep.name, ep.value))
            logger.log(level, "%s", error)
            if exc.__cause__ is not None:
                logger.debug("why the plugin %r could not be loaded", ep.name, exc_info=exc.__cause__)
            continue
        if dist is not None:
            pm._record_distribution(plugin, dist)


def _plugin_of(pm: CartesiaSyncPluginManager, ep: importlib.metadata.EntryPoint) -> object:
    """Load, instantiate if it is a class, and register the plugin an entry point names.

    :raises ConfigurationError: with the original exception as ``__cause__``; nothing stays registered.
    """
    try:
        target = ep.load()
    except Exception as exc:
        raise ConfigurationError(f"importing {ep.value} failed ({type(exc).__name__}: {exc})") from exc
    plugin = target
    if isinstance(target, type):
        try:
            plugin = target()
        except Exception as exc:
            hint = (
                "; a plugin class named by an entry point is made with no arguments"
                if isinstance(exc, TypeError)
                else ""
            )
            raise ConfigurationError(
                f"creating the plugin {ep.value}() failed ({type(exc).__name__}: {exc}){hint}"
            ) from exc
    register_plugin(pm, plugin, name=ep.name)
    callers = pm.get_hookcallers(plugin) or []
    unknown = sorted(
        caller.name
        for caller in callers
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )
    if unknown or not (callers or isinstance(plugin, types.ModuleType)):
        pm.unregister(plugin)
        if unknown:
            raise ConfigurationError(
                f"{ep.value} implements {', '.join(unknown)}: no such hook in this cartesia-sync version "
                "(misspelt, or made for another version)"
            )
        what = f"an instance of {target.__qualname__}" if plugin is not target else f"a {type(target).__name__}"
        raise ConfigurationError(
            f"{ep.value} is {what} with no @cartesia_sync.hookimpl methods; an entry point must name a module, "
            "a plugin class or a plugin instance"
        )
    return plugin


def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register one plugin object under ``name``, else its ``name`` attribute (or pluggy's default).

    :raises ConfigurationError: the plugin is invalid, already registered, or
        uses hook wrappers (cartesia_sync calls each implementation on its own).
    """
    wanted = name or plugin_name_of(plugin)
    try:
        name = pm.register(plugin, name=wanted)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise ConfigurationError(f"cannot register plugin {plugin!r}: {exc}") from exc
    if name is None:  # blocked by name
        return wanted or ""
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                pm.unregister(plugin)
                raise ConfigurationError(
                    f"plugin {name!r} declares {caller.name} as a hook wrapper; cartesia_sync hooks are "
                    "notifications, implement them as plain @hookimpl functions"
                )
    return name


def list_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Describe the registered plugins, and the installed ones that could not be loaded.

    :returns: one dict per plugin, sorted by name, with ``name``, ``version``
        (``None`` when it was not installed from a distribution) and the
        sorted ``hooks`` list. An installed plugin that was skipped because it
        could not be loaded has no hooks and an ``error`` saying why and what
        to do.
    """
    versions = {id(plugin): dist.version for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or ()))
        out.append({"name": name, "version": versions.get(id(plugin)), "hooks": hooks})
    for broken in getattr(pm, "broken_plugins", ()):
        out.append({"name": broken.name, "version": broken.version, "hooks": [], "error": str(broken.error)})
    return sorted(out, key=lambda item: item["name"])


class HookDispatcher:
    """Calls hooks of one session, isolating each plugin.

    :param pm: the plugin manager.
    :param session: passed to every hook as ``session``.
    :param record_error: called with each :class:`PluginError` before it is
        reported through ``on_error`` (the session counts and stores them).
    :param scrub: applied to every error text, so that a plugin's exception
        message cannot leak the API key.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        session: object,
        record_error: Callable[[CartesiaSyncError], None],
        scrub: Callable[[str], str] = lambda text: text,
    ) -> None:
        self._pm = pm
        self._session = session
        self._record_error = record_error
        self._scrub = scrub
        self._callers: dict[str, list[tuple[str, Any]]] = {}
        self._final_thread: threading.Thread | None = None

    def emit_last(self, hook_name: str, **kwargs: Any) -> None:
        """Emit the session's last hook; from then on, calls from any other thread are dropped.

        A hook still running on another thread (one that outlived the join
        timeout) therefore cannot reach plugins after this one.
        """
        self._final_thread = threading.current_thread()
        self.emit(hook_name, **kwargs)

    def emit(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook_name``, newest plugin first.

        An implementation that raises is logged with its traceback, wrapped in a
        :class:`PluginError` (original in ``__cause__``), recorded, and reported
        through ``on_error``; the remaining implementations are still called.
        A failing ``on_error`` implementation is only logged.
        """
        kwargs["session"] = self._session
        for plugin_name, call in self._callers_of(hook_name):
            final = self._final_thread
            if final is not None and final is not threading.current_thread():
                logger.debug("dropped %s for plugin %r: the session has ended", hook_name, plugin_name)
                return
            try:
                call(**kwargs)
            except Exception as exc:
                self._plugin_failed(hook_name, plugin_name, exc)

    def _callers_of(self, hook_name: str) -> list[tuple[str, Any]]:
        """Per plugin implementing ``hook_name``, newest first: its name and a pluggy caller of it alone.

        pluggy stops a hook call at the first implementation that raises; a
        caller per plugin (``subset_hook_caller``) keeps each call going through
        pluggy, so its tracing and monitoring see it, and isolates the plugin.
        Plugins are fixed once a session starts, so the callers are made once.
        """
        callers = self._callers.get(hook_name)
        if callers is None:
            impls = getattr(self._pm.hook, hook_name).get_hookimpls()
            callers = [
                (
                    impl.plugin_name,
                    self._pm.subset_hook_caller(hook_name, [other.plugin for other in impls if other is not impl]),
                )
                for impl in reversed(impls)
            ]
            self._callers[hook_name] = callers
        return callers

    def report(self, error: CartesiaSyncError) -> None:
        """Report a library error through ``on_error``."""
        self.emit("on_error", error=error)

    def _plugin_failed(self, hook_name: str, plugin_name: str, exc: Exception) -> None:
        # The traceback is formatted here, scrubbed, rather than passed as exc_info: a plugin's
        # exception message may hold the key.
        trace = self._scrub("".join(traceback.format_exception(exc)).rstrip())
        if hook_name == "on_error":
            logger.error("plugin %r raised in on_error; not reported again\n%s", plugin_name, trace)
            return
        logger.error("plugin %r raised in %s\n%s", plugin_name, hook_name, trace)
        error = PluginError(hook_name, plugin_name, self._scrub(f"{type(exc).__name__}: {exc}"))
        error.__cause__ = exc
        self._record_error(error)
        self.emit("on_error", error=error)
