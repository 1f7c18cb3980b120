"""LocalServer: a Cartesia-compatible STT server on this machine, every route on one port.

It needs no network and no API key. The main job of the command line runs on
it when no key is configured, and tests use it as a real WebSocket peer::

    from cartesia_sync.local import LocalServer

    with LocalServer() as server:                    # pocketsphinx, 127.0.0.1, a free port
        print(cartesia_sync.transcribe("a.wav", url=server.url).text)

Each connection runs on its own thread (the ``websockets`` package's sync
server) with its own engine stream. The same port serves the batch routes
(``POST /stt``, ``POST /audio/transcriptions``), ``POST /access-token`` and
``GET /`` (see ``_http_front`` for how a socket finds its handler), so one
``base_url`` reaches every route, as with the hosted API.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .._config import is_loopback_host
from .._plugin_manager import create_plugin_manager
from .._secrets import ApiKey
from ..errors import ConfigurationError
from ._admission import Admission
from ._bundled import BundledEngines
from ._connection import Conversation, ConversationConfig
from ._engine import Engine, EngineRegistry
from ._http_front import dispatcher, serve_http
from ._http_routes import MAX_UPLOAD_BYTES, HttpRoutes, RouteConfig
from ._recording import ConnectionRecord
from ._scenario import Scenario
from ._tokens import TokenBook
from ._turn_conversation import TURNS_PATH, TurnConversation
from ._ws_handshake import STT_PATH, HandshakeGate, wire_logger

__all__ = ["LocalServer", "DEFAULT_MODELS", "available_engines"]

logger = logging.getLogger("cartesia_sync.local.server")

#: Model ids the server accepts, as the hosted API names them.
DEFAULT_MODELS: frozenset[str] = frozenset({"ink-whisper", "ink-whisper-2025-06-04", "ink-2"})


_Server = TypeVar("_Server", bound="LocalServer")

#: Backpressure. A connection's handler reads a frame only when the engine has decoded the one
#: before, so the server must not read ahead of it either: websockets stops reading the socket once
#: this many frames wait (its flow control), and the kernel's receive buffer is kept small, so a
#: client that sends an hour unpaced is held back by TCP instead of piling the hour up here.
INCOMING_FRAMES = 16
RECEIVE_BUFFER_BYTES = 128 * 1024  # the kernel doubles it: about 8 s of 16 kHz s16le audio
# For the same reason the server sends no keepalive pings of its own: a client's pong queues behind
# the audio the server has not read yet, so a client with a long backlog (an hour sent unpaced) looks
# dead after websockets' 20 s and was cut off with 1011. Dead clients are found by ``idle_timeout``.

#: Limits against hostile or broken clients (see README, "The embedded local server").
MAX_CONNECTIONS = 64
MAX_MESSAGE_BYTES = 2**20  # 32 s of 16 kHz s16le in one frame; websockets' and the official SDK's default
HANDSHAKE_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
#: Seconds a closing connection waits for the client's close frame before it drops the socket.
CLOSE_TIMEOUT = 5.0
#: At stop(), how long connections get to finish their close handshake before their sockets are shut.
CLOSE_GRACE = 1.0


def engine_registry(load_entrypoints: bool = True) -> EngineRegistry:
    """Collect the engines that the bundled and the installed plugins offer."""
    registry = EngineRegistry()
    pm = create_plugin_manager([BundledEngines()], load_entrypoints=load_entrypoints)
    pm.hook.register_engines(register=registry.register)
    return registry


def available_engines(load_entrypoints: bool = True) -> list[str]:
    """The names of every engine a :class:`LocalServer` can use."""
    return engine_registry(load_entrypoints).names()


class LocalServer:
    """A Cartesia-compatible streaming STT server on this machine.

    :param engine: an engine name (``"pocketsphinx"``, ``"scripted"``, or one
        a plugin registers) or an engine object.
    :param host: the address to bind; loopback unless told otherwise.
    :param port: the port; 0 picks a free one.
    :param api_key: when set, handshakes must carry it (``X-API-Key``,
        ``Authorization: Bearer`` or ``api_key=``), else they get HTTP 401.
    :param idle_timeout: seconds without any message after which a connection
        is closed, as the hosted API does.
    :param models: the accepted ``model`` query values.
    :param scenario: scripted faults (see :class:`Scenario`); none by default.
    :param record: keep a :class:`ConnectionRecord` of every connection in
        :attr:`connections` (for tests).
    :param record_secrets: keep the key in those records instead of ``***``,
        for tests that check how a client sends it.
    :param request_id: the ``request_id`` of every connection (default: a
        fresh UUID per connection), for tests that want fixed values.
    :param allow_remote: must be true to bind a non-loopback address.
    :param load_entrypoints: let installed plugins offer engines.
    :param max_connections: sessions open at once; one more is refused at the
        handshake with HTTP 429 ``concurrency_limited``. As many sockets again
        may wait in the handshake; more get HTTP 503 at once.
    :param max_streams: engine streams (decoders) open at once; a connection
        whose first audio finds them all in use gets an ``error`` message with
        status 429 ``concurrency_limited`` and is closed (code 1013). Default:
        the engine's ``max_streams`` attribute if it has one (PocketSphinx: 8,
        about 150 MB each), else ``max_connections``.
    :param max_message_bytes: the largest message (audio frame or command) a
        client may send; a larger one closes the connection with code 1009.
    :param max_pending_messages: frames received but not yet processed, per
        connection (a message is one frame unless the client fragments it);
        the server then stops reading the socket and TCP holds the client
        back. With ``max_message_bytes`` this bounds a connection's buffered
        input (16 x 1 MiB by default).
    :param handshake_timeout: seconds a socket may take to complete the handshake.
    :param write_timeout: seconds a message to a client may wait for the client
        to read; a client that stops reading longer is disconnected.
    :param max_upload_bytes: the largest batch upload (``POST /stt``); a larger
        one is answered 413. Default: the hosted API's 2 GB.
    :param engine_options: passed to the engine factory when ``engine`` is a name.
    """

    #: The routes this server serves (read by the client: ``"batch"`` means ``base_url`` reaches ``POST /stt``).
    routes: tuple[str, ...] = ("stream", "batch", "token", "status")

    def __init__(
        self,
        engine: str | Engine = "pocketsphinx",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        idle_timeout: float = 20.0,
        models: Iterable[str] = DEFAULT_MODELS,
        scenario: Scenario | None = None,
        record: bool = False,
        record_secrets: bool = False,
        request_id: str | None = None,
        allow_remote: bool = False,
        load_entrypoints: bool = True,
        max_connections: int = MAX_CONNECTIONS,
        max_streams: int | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_pending_messages: int = INCOMING_FRAMES,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        **engine_options: Any,
    ) -> None:
        _check_limits(
            max_upload_bytes=max_upload_bytes,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_message_bytes=max_message_bytes,
            max_pending_messages=max_pending_messages,
            handshake_timeout=handshake_timeout,
            write_timeout=write_timeout,
        )
        if not is_loopback_host(host) and not allow_remote:
            raise ConfigurationError(
                f"refusing to bind {host!r}: the local server listens on loopback only unless allow_remote=True"
            )
        if isinstance(engine, str):
            self.engine: Engine = engine_registry(load_entrypoints).create(engine, **engine_options)
            self._owns_engine = True
        else:
            self.engine = engine
            self._owns_engine = False
        if max_streams is None:
            max_streams = getattr(self.engine, "max_streams", None) or max_connections
        _check_limits(max_streams=max_streams)
        self.max_streams: int = max_streams
        self._api_key = ApiKey(api_key) if api_key else None
        self._record_secrets = record_secrets
        self.scenario = scenario or Scenario()
        self.connections: list[ConnectionRecord] = []
        self._config = ConversationConfig(
            engine=self.engine,
            models=frozenset(models) | {getattr(self.engine, "name", "local")},
            idle_timeout=idle_timeout,
            scenario=self.scenario,
            record=record,
            request_id=request_id,
            streams=threading.BoundedSemaphore(max_streams),
            max_streams=max_streams,
        )
        self._host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._handshakes = 0
        self._open_connections: set[Any] = set()
        self.max_connections = max_connections
        self.max_message_bytes = max_message_bytes
        self.max_pending_messages = max_pending_messages
        self.handshake_timeout = handshake_timeout
        self.write_timeout = write_timeout
        self._admission = Admission(max_connections, write_timeout)
        self.max_upload_bytes = max_upload_bytes
        self._tokens = TokenBook()
        self._stopping = threading.Event()
        self._gate = HandshakeGate(
            next_request=self._next_request,
            scenario=lambda: self.scenario,
            turns_path=TURNS_PATH,
            admission=self._admission,
            max_connections=max_connections,
            api_key=lambda: self._api_key,
            tokens=self._tokens,
            record=self.connections.append if record else None,
            record_secrets=record_secrets,
        )
        #: a fixed text for every batch answer (FakeCartesia's ``batch_text``); None: the engine's
        self._batch_text: str | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self: _Server) -> _Server:
        """Bind and serve on a background thread; returns once it accepts connections."""
        from websockets.sync.server import serve

        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            listener = socket.create_server((self._host, self._port), family=family)
            # Accepted connections inherit the listener's receive buffer.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            self._server = serve(
                self._handle,
                sock=listener,
                process_request=self._gate.process_request,
                compression=None,
                max_size=self.max_message_bytes,
                max_queue=self.max_pending_messages,
                open_timeout=self.handshake_timeout,
                close_timeout=CLOSE_TIMEOUT,
                ping_interval=None,
                server_header="cartesia-sync-local",
                logger=wire_logger,
            )
            # Count and bound every accepted socket (see _admission); websockets calls this per socket.
            # Plain HTTP requests (the batch and token routes) are served by _serve_http on the same port.
            routed = dispatcher(self._server.handler, self._serve_http, self.handshake_timeout)
            self._server.handler = self._admission.wrap(routed)
            self._thread = threading.Thread(target=self._server.serve_forever, name="local-stt-server", daemon=True)
            self._thread.start()
        logger.info("local STT server listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop` or Ctrl-C."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, stop the engine. Idempotent.

        Connections get :data:`CLOSE_GRACE` seconds to finish the close
        handshake; then the sockets still open are shut down, so clients that
        never read or ignore the close frame cannot hold the server. Returns
        within about ``timeout`` seconds (plus the engine's own shutdown).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is None:
            return
        self._stopping.set()
        closer = threading.Thread(target=self._close_all, args=(server,), name="local-stt-server-stop", daemon=True)
        closer.start()
        grace_ends = time.monotonic() + min(CLOSE_GRACE, timeout)
        closer.join(min(CLOSE_GRACE, timeout))
        while self._admission.held()[0] and time.monotonic() < grace_ends:
            time.sleep(0.02)  # connections still closing (websockets before 17 returns from shutdown at once)
        held, _ = self._admission.held()
        if held:  # clients that do not read, ignore the close frame, or never finished the handshake
            self._admission.sever_all()
            with self._lock:
                sessions = list(self._open_connections)
            for conn in sessions:
                # A handler blocked on a full incoming queue waits for the reader thread, which waits
                # for the handler to drain the queue: only closing the connection's queue ends that.
                getattr(conn, "close_socket", lambda: None)()
            logger.info("shut down %d sockets that did not close within %.1f s", held, CLOSE_GRACE)
        if self._owns_engine:  # an engine call in progress fails now instead of running to its end
            self.engine.close()
        _, handlers = self._admission.held()
        for waited in [closer, *handlers, *([thread] if thread is not None else [])]:
            waited.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in [closer, *handlers]) or (thread is not None and thread.is_alive()):
            logger.error("the local server did not stop within %.1f s", timeout)

    def _close_all(self, server: Any) -> None:
        """Stop accepting and close every connection (1001), waiting for their close handshakes."""
        server.shutdown()  # websockets 17 also closes the connections and waits for them; older ones do not
        with self._lock:
            sessions = list(self._open_connections)
        closers = [threading.Thread(target=_close_going_away, args=(conn,), daemon=True) for conn in sessions]
        for closing in closers:
            closing.start()
        for closing in closers:
            closing.join(CLOSE_TIMEOUT + CLOSE_GRACE)  # ends at the close handshake, or when stop() cuts the socket

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the server is not running; call start() or use it in a with block")
        return int(self._server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The ``ws://`` URL of the streaming endpoint, for ``Client(url=...)``."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"ws://{host}:{self.port}{STT_PATH}"

    @property
    def base_url(self) -> str:
        """The ``http://`` base URL of every route, for ``Client(base_url=...)`` and the official SDK."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}"

    def wait_finished(self, index: int = -1, timeout: float = 5.0) -> ConnectionRecord:
        """The record of a connection (the last by default), once it has ended (needs ``record=True``).

        :param index: which connection, in arrival order; a non-negative index
            waits for that connection to arrive.
        :raises TimeoutError: the connection did not arrive or end in time.
        """
        if not self._config.record:
            raise RuntimeError("connections are recorded only by a server made with record=True")
        deadline = time.monotonic() + timeout
        needed = index + 1 if index >= 0 else 1
        while len(self.connections) < needed:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"connection {index} did not arrive within {timeout:g} s")
            time.sleep(0.01)
        record = self.connections[index]
        if not record.finished.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"connection {index} did not end within {timeout:g} s")
        return record

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._server is not None else "stopped"
        return (
            f"<LocalServer {state} engine={getattr(self.engine, 'name', '?')!r} key={'***' if self._api_key else None}>"
        )

    # -- plain HTTP ---------------------------------------------------------------------

    def _serve_http(self, sock: socket.socket, addr: Any) -> None:
        """Serve the HTTP requests of one socket (batch, tokens, status); see ``_http_front``."""
        config = RouteConfig(
            engine=self.engine,
            models=self._config.models,
            api_key=self._api_key,
            tokens=self._tokens,
            streams=self._config.streams,
            max_upload_bytes=self.max_upload_bytes,
            scenario=self.scenario,
            next_request=self._next_request,
            admit=self._admission.admit,
            record=self.connections.append if self._config.record else None,
            record_secrets=self._record_secrets,
            request_id=self._config.request_id,
            batch_text=self._batch_text,
            stopping=self._stopping,
        )
        try:
            serve_http(
                sock,
                HttpRoutes(config).answer,
                head_timeout=self.handshake_timeout,
                idle_timeout=self._config.idle_timeout,
                on_head=self._admission.leave_handshake,
            )
        except Exception:
            logger.exception("a local server HTTP connection failed")

    def _next_request(self) -> bool:
        """Count one HTTP request among the handshakes; True when the scenario's faults apply to it."""
        with self._lock:
            faulty = self.scenario.applies_to(self._handshakes)
            self._handshakes += 1
        return faulty

    # -- connections ------------------------------------------------------------------

    def _handle(self, conn: Any) -> None:
        record: ConnectionRecord | None = getattr(conn, "cartesia_record", None)
        with self._lock:
            self._open_connections.add(conn)
            stopping = self._server is None
        try:
            if stopping:  # accepted while stop() ran, after it looked for connections to close
                conn.close(1001, "server shutting down")
                return
            config = self._config if conn.cartesia_faulty else dataclasses.replace(self._config, scenario=Scenario())
            turns = conn.request is not None and urlsplit(conn.request.path).path == TURNS_PATH
            (TurnConversation if turns else Conversation)(conn, config, record).run()
        except Exception:
            logger.exception("a local server connection failed")
        finally:
            with self._lock:
                self._open_connections.discard(conn)
            if record is not None:
                record.close_code = conn.close_code
                record.finished.set()


def _close_going_away(conn: Any) -> None:
    try:
        conn.close(1001, "server shutting down")
    except Exception:
        logger.debug("closing a connection at shutdown failed", exc_info=True)


def _check_limits(**limits: float) -> None:
    """Refuse limits that are not positive: seconds for ``*_timeout``, whole numbers for the rest."""
    for name, value in limits.items():
        seconds = name.endswith("timeout")
        kinds: tuple[type, ...] = (int, float) if seconds else (int,)
        if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < math.inf:
            what = "a positive number of seconds" if seconds else "a positive whole number"
            raise ConfigurationError(f"{name} must be {what}, got {value!r}")
