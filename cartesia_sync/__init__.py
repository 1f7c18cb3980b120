"""cartesia_sync: a synchronous, thread-based client for Cartesia's streaming speech-to-text.

Quick start::

    import cartesia_sync
    print(cartesia_sync.transcribe("call.wav").text)

See :class:`Client` and :class:`Session` for streaming, and
:mod:`cartesia_sync.hookspecs` for the plugin API.
"""

import logging

from ._access_token import create_access_token
from ._batch import BatchSession
from ._client import Client
from ._config import SessionOptions
from ._events import (
    Connected,
    Done,
    Event,
    FlushDone,
    ServerErrorEvent,
    Transcript,
    TurnEagerEnd,
    TurnEnd,
    TurnEvent,
    TurnResume,
    TurnStart,
    TurnUpdate,
    UnknownMessage,
    Word,
    parse_message,
    parse_turn_message,
)
from ._many import BatchReport, SourceReport, transcribe_many
from ._native_stderr import capture_native_stderr, native_stderr_filtered
from ._reconnect import Reconnected
from ._result import TranscriptionResult
from ._session import Session, SessionState
from ._stats import SessionStats
from ._terminal import terminal_safe
from ._transcribe import transcribe
from ._turn_session import TurnSession
from ._turns import Turn
from .errors import (
    AudioFormatError,
    AuthenticationError,
    CartesiaSyncError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    NetworkError,
    PaymentRequiredError,
    PluginError,
    ProtocolError,
    RateLimitError,
    ServerError,
    SessionClosedError,
    StreamTimeout,
)
from .hookspecs import hookimpl

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Client",
    "Session",
    "TurnSession",
    "Turn",
    "BatchSession",
    "SessionState",
    "SessionOptions",
    "SessionStats",
    "transcribe",
    "transcribe_many",
    "BatchReport",
    "SourceReport",
    "TranscriptionResult",
    "create_access_token",
    "hookimpl",
    "capture_native_stderr",
    "native_stderr_filtered",
    "terminal_safe",
    "Word",
    "Transcript",
    "FlushDone",
    "Done",
    "ServerErrorEvent",
    "UnknownMessage",
    "Event",
    "Reconnected",
    "parse_message",
    "Connected",
    "TurnStart",
    "TurnUpdate",
    "TurnEagerEnd",
    "TurnResume",
    "TurnEnd",
    "TurnEvent",
    "parse_turn_message",
    "CartesiaSyncError",
    "ConfigurationError",
    "NetworkError",
    "ConnectError",
    "AuthenticationError",
    "PaymentRequiredError",
    "RateLimitError",
    "ConnectionLostError",
    "ServerError",
    "ProtocolError",
    "StreamTimeout",
    "SessionClosedError",
    "AudioFormatError",
    "PluginError",
]
