"""Plugin manager factory, plugin listing, and the one function that calls hooks.

There is no global plugin manager: every :class:`~cartesia_sync.Client` builds
its own with :func:`create_plugin_manager`. Every hook call in the library goes
through :meth:`HookDispatcher.emit`, which calls each implementation on its own
so that one failing plugin cannot silence the others or kill the thread that
dispatches.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from typing import Any, Callable, Dict, Iterable, List, Optional

import pluggy

from . import hookspecs
from .errors import CartesiaSyncError, ConfigurationError, PluginError
from .hookspecs import PROJECT_NAME

__all__ = ["create_plugin_manager", "list_plugins", "HookDispatcher", "plugin_name_of"]

logger = logging.getLogger(__name__)
trace_logger = logging.getLogger("cartesia_sync.hooks")

DISABLE_ENV = "CARTESIA_SYNC_DISABLE_PLUGINS"
TRACE_ENV = "CARTESIA_SYNC_TRACE_HOOKS"


def plugin_name_of(plugin: object) -> Optional[str]:
    """The name a plugin object asks to be registered under (its ``name`` attribute)."""
    name = getattr(plugin, "name", None)
    return name if isinstance(name, str) and name else None


def create_plugin_manager(plugins: Iterable[object] = (), load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the hook specs and the given plugins.

    :param plugins: plugin objects (instances or modules) to register, in order.
    :param load_entrypoints: also load installed plugins from the
        ``cartesia_sync`` entry-point group, except those named in
        ``$CARTESIA_SYNC_DISABLE_PLUGINS`` (comma-separated).
    :raises ConfigurationError: an installed plugin failed to load, or a
        plugin implements a hook that does not exist or uses a hook wrapper.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in filter(None, (part.strip() for part in os.environ.get(DISABLE_ENV, "").split(","))):
        pm.set_blocked(name)
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(PROJECT_NAME)
        except Exception as exc:
            raise ConfigurationError(
                f"an installed cartesia_sync plugin failed to load ({type(exc).__name__}: {exc}); "
                f"uninstall it, block it with {DISABLE_ENV}=<name>, or pass load_entrypoints=False"
            ) from exc
    for plugin in plugins:
        register_plugin(pm, plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc
    return pm


def register_plugin(pm: pluggy.PluginManager, plugin: object) -> str:
    """Register one plugin object under its ``name`` attribute (or pluggy's default).

    :raises ConfigurationError: the plugin is invalid, already registered, or
        uses hook wrappers (cartesia_sync calls each implementation on its own).
    """
    try:
        name = pm.register(plugin, name=plugin_name_of(plugin))
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise ConfigurationError(f"cannot register plugin {plugin!r}: {exc}") from exc
    if name is None:  # blocked by name
        return plugin_name_of(plugin) or ""
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                pm.unregister(plugin)
                raise ConfigurationError(
                    f"plugin {name!r} declares {caller.name} as a hook wrapper; cartesia_sync hooks are "
                    "notifications, implement them as plain @hookimpl functions"
                )
    return name


def list_plugins(pm: pluggy.PluginManager) -> List[Dict[str, Any]]:
    """Describe the registered plugins: name, distribution version and hooks.

    :returns: one dict per plugin with ``name``, ``version`` (``None`` when it
        was not installed from a distribution) and the sorted ``hooks`` list.
    """
    versions = {id(plugin): dist.version for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or ()))
        out.append({"name": name, "version": versions.get(id(plugin)), "hooks": hooks})
    return out


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
        self._trace = bool(os.environ.get(TRACE_ENV))
        self._final_thread: Optional[threading.Thread] = None

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
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            final = self._final_thread
            if final is not None and final is not threading.current_thread():
                logger.debug("dropped %s for plugin %r: the session has ended", hook_name, impl.plugin_name)
                return
            if self._trace:
                trace_logger.debug("calling %s of plugin %r", hook_name, impl.plugin_name)
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                self._plugin_failed(hook_name, impl.plugin_name, exc)

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
