"""The embedded default: a Cartesia-compatible streaming STT server that runs on this machine.

Needs the ``local`` extra (``pip install 'cartesia-sync[local]'``: the
``websockets`` server and the ``pocketsphinx`` engine).
"""

from .engine import ENGINE_SAMPLE_RATE, Engine, EngineRegistry, EngineStream, Recognition, StreamOptions, words_between
from .recording import ConnectionRecord, Received
from .scenario import Scenario
from .scripted_engine import ScriptedEngine
from .server import DEFAULT_MODELS, LocalServer, available_engines

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
