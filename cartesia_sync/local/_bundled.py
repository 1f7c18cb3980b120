"""The engines that ship with cartesia_sync, offered through the same hook as third-party ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl

__all__ = ["BundledEngines"]


def _pocketsphinx(**options: Any) -> Any:
    try:
        from ._pocketsphinx_engine import PocketSphinxEngine
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"the pocketsphinx engine needs the 'local' extra: pip install 'cartesia-sync[local]' ({exc})"
        ) from exc
    return PocketSphinxEngine(**options)


def _scripted(**options: Any) -> Any:
    from ._scripted_engine import ScriptedEngine

    return ScriptedEngine(**options)


class BundledEngines:
    """Registers ``pocketsphinx`` (real offline recognition) and ``scripted`` (deterministic)."""

    name = "cartesia_sync.engines"

    @hookimpl
    def register_engines(self, register: Callable[..., None]) -> None:
        register(
            "pocketsphinx",
            _pocketsphinx,
            "offline US-English recognition with the model shipped in the pocketsphinx wheel",
        )
        register("scripted", _scripted, "deterministic test engine: scripted texts or facts about the audio")
