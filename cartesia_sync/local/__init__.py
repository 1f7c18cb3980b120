"""The embedded default: a Cartesia-compatible streaming STT server that runs on this machine.

Needs the ``local`` extra (``pip install 'cartesia-sync[local]'``: the
``websockets`` server and the ``pocketsphinx`` engine).
"""

from ._engine import ENGINE_SAMPLE_RATE, Engine, EngineRegistry, EngineStream, Recognition, StreamOptions, words_between
from ._recording import ConnectionRecord, Received
from ._scenario import Scenario
from ._scripted_engine import ScriptedEngine
from ._server import DEFAULT_MODELS, LocalServer, available_engines

__all__ = [
    "LocalServer",
    "DEFAULT_MODELS",
    "available_engines",
    "Engine",
    "EngineStream",
    "EngineRegistry",
    "Recognition",
    "StreamOptions",
    "ENGINE_SAMPLE_RATE",
    "words_between",
    "ScriptedEngine",
    "Scenario",
    "ConnectionRecord",
    "Received",
]
