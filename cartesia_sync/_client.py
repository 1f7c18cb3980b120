"""Client: configuration and plugins shared by the sessions it opens."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pluggy

from ._batch import transcribe_batch
from ._config import (
    API_KEY_ENV,
    DEFAULT_CARTESIA_VERSION,
    HOSTED_HOST,
    ConnectionSettings,
    SessionOptions,
    resolve_speed,
)
from ._endpoints import check_plain_http, resolve_endpoints
from ._modes import choose_mode, transcribe_stream
from ._plugin_manager import create_plugin_manager, list_plugins, register_plugin
from ._result import TranscriptionResult
from ._secrets import AccessToken, ApiKey
from ._session import Session
from ._turn_session import TurnSession
from ._turns import TURN_MODELS, TurnSettings
from ._wire import WireConnection
from .errors import ConfigurationError

__all__ = ["Client"]

#: The fields of SessionOptions, which Client also takes one by one, and their defaults.
_OPTION_FIELDS = frozenset(field.name for field in dataclasses.fields(SessionOptions))
_OPTION_DEFAULTS = {field.name: field.default for field in dataclasses.fields(SessionOptions)}

logger = logging.getLogger("cartesia_sync.client")


class Client:
    """Settings and plugins for streaming sessions; open one with :meth:`connect`.

    A client holds no connection itself and may be shared between threads;
    each :meth:`connect` opens an independent :class:`Session`.

    :param api_key: the Cartesia API key; default ``$CARTESIA_API_KEY``. Sent
        as ``auth`` says. Never shown in a repr, log line or error message.
    :param url: the streaming endpoint alone; default ``$CARTESIA_STT_URL``,
        else derived from ``base_url``. A client given only ``url`` streams
        only (it knows no batch route).
    :param base_url: the base of every route: ``/stt/websocket`` (as
        ``wss://``), ``/stt/turns/websocket``, ``POST /stt`` and
        ``POST /access-token``; default ``$CARTESIA_BASE_URL`` or
        ``https://api.cartesia.ai``. ``http://`` is refused with a
        credential unless the host is this machine.
    :param model: e.g. ``"ink-whisper"``.
    :param language: ISO-639-1 code, or ``None`` to let the server choose.
    :param encoding: wire encoding; ``send()`` converts arrays and files to
        ``pcm_s16le`` only, other encodings take raw bytes.
    :param sample_rate: wire sample rate in Hz.
    :param plugins: plugin objects registered on this client only.
    :param load_entrypoints: also load installed plugins (entry-point group
        ``cartesia_sync``).
    :param min_volume: server-side volume threshold (optional query parameter).
    :param max_silence_duration_secs: server-side endpointing silence.
    :param keyterms: words to boost, sent as repeated ``keyterm`` parameters.
    :param cartesia_version: the ``Cartesia-Version`` header.
    :param auth: how the API key is sent: ``"header"`` (default,
        ``X-API-Key``), ``"bearer"`` (``Authorization: Bearer``, the API's
        current scheme) or ``"query"`` (``api_key=`` in the WebSocket URL, for
        proxies that strip headers; avoid otherwise; HTTP requests then send
        ``X-API-Key``, as the API takes ``api_key=`` on WebSockets only).
    :param access_token: a short-lived token (see
        :func:`~cartesia_sync.create_access_token`) to use instead of a key:
        sent as ``Authorization: Bearer`` over HTTP and as ``access_token=``
        on WebSockets; ``$CARTESIA_API_KEY`` is then not read. Masked like a key.
    :param end_command: ``"done"`` (default) or ``"close"``.
    :param connect_timeout: handshake timeout in seconds.
    :param ca_certs: a CA bundle for servers with private certificates;
        verification itself is always on.
    :param extra_headers: more handshake headers.
    :param options: how sessions behave, as one :class:`SessionOptions`
        object; or pass its fields one by one as the keyword arguments below
        (``frame_duration`` to ``max_message_size``, documented on
        :class:`SessionOptions`), not both.
    :raises ConfigurationError: a setting is invalid or unsafe.
    """

    def __init__(
        self,
        api_key: str | None = None,
        url: str | None = None,
        model: str = "ink-whisper",
        language: str | None = "en",
        encoding: str = "pcm_s16le",
        sample_rate: int = 16000,
        plugins: Iterable[object] = (),
        load_entrypoints: bool = True,
        *,
        min_volume: float | None = None,
        max_silence_duration_secs: float | None = None,
        keyterms: Sequence[str] = (),
        cartesia_version: str = DEFAULT_CARTESIA_VERSION,
        auth: str = "header",
        base_url: str | None = None,
        access_token: str | None = None,
        end_command: str = "done",
        connect_timeout: float = 10.0,
        ca_certs: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        options: SessionOptions | None = None,
        frame_duration: float = 0.1,
        max_buffer_seconds: float = 30.0,
        buffer_policy: str = "block",
        send_timeout: float = 30.0,
        keepalive_interval: float | None = 10.0,
        finalize_timeout: float = 10.0,
        close_timeout: float = 10.0,
        close_grace: float = 2.0,
        join_timeout: float = 5.0,
        raise_errors: bool = True,
        reconnect: bool = True,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 10.0,
        replay_seconds: float = 30.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        max_message_size: int = 4 * 1024 * 1024,
        **unknown: NoReturn,
    ) -> None:
        if unknown:  # typed NoReturn: a type checker flags any extra keyword; at run time, say which
            names = ", ".join(sorted(unknown))
            raise ConfigurationError(f"unknown Client argument: {names}; see help(cartesia_sync.Client)")
        credential = _credential(api_key, access_token)
        if isinstance(keyterms, str):
            keyterms = (keyterms,)
        # The keyword arguments named after SessionOptions fields, validated once, by SessionOptions.
        fields = {name: value for name, value in locals().items() if name in _OPTION_FIELDS}
        if options is None:
            self.options = SessionOptions(**fields)
        elif not isinstance(options, SessionOptions):
            raise ConfigurationError(f"options must be a SessionOptions, got {type(options).__name__}")
        else:
            changed = sorted(name for name, value in fields.items() if value != _OPTION_DEFAULTS[name])
            if changed:
                raise ConfigurationError(
                    "pass session options either as options= or as keyword arguments, not both "
                    f"(got {', '.join(changed)})"
                )
            self.options = options
        #: Where each route is (see :class:`~cartesia_sync._endpoints.Endpoints`).
        self.endpoints = resolve_endpoints(url or None, base_url)
        check_plain_http(self.endpoints.base_url, credential is not None)
        self.settings = ConnectionSettings(
            url=self.endpoints.stream,
            api_key=credential,
            model=model,
            language=language,
            encoding=encoding,
            sample_rate=sample_rate,
            min_volume=min_volume,
            max_silence_duration_secs=max_silence_duration_secs,
            keyterms=tuple(keyterms),
            cartesia_version=cartesia_version,
            auth=auth,
            end_command=end_command,
            connect_timeout=connect_timeout,
            ca_certs=ca_certs,
            extra_headers=tuple((extra_headers or {}).items()),
        )
        self._plugin_manager = create_plugin_manager(plugins, load_entrypoints)
        self._frozen = False
        self._lock = threading.Lock()

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """This client's own plugin manager (read it; register through :meth:`register`)."""
        return self._plugin_manager

    def register(self, plugin: object) -> str:
        """Register one more plugin; only before the first session is opened.

        :returns: the name it was registered under.
        :raises RuntimeError: a session was already opened (pluggy registration
            is not thread-safe while hooks run).
        """
        with self._lock:
            if self._frozen:
                raise RuntimeError("register plugins before the first connect(); sessions may be running hooks now")
            return register_plugin(self._plugin_manager, plugin)

    def plugins(self) -> list[dict[str, Any]]:
        """The registered plugins: name, version and hooks of each."""
        return list_plugins(self._plugin_manager)

    def connect(self, realtime: None | bool | float = None) -> Session:
        """Open a session: the handshake happens here, and its failures raise here.

        :param realtime: ``None`` paces audio at 1x for remote servers and not
            at all for a server on loopback; ``True`` is 1x; ``False`` unpaced;
            a positive number is a speed factor.
        :raises AuthenticationError: the key was refused (401/403).
        :raises PaymentRequiredError: no credits (402).
        :raises RateLimitError: too many connections (429).
        :raises ConnectError: any other handshake or network failure.
        :raises ConfigurationError: no API key for the hosted API.
        """
        self._check_hosted_key(self.settings.url)
        speed = resolve_speed(realtime, self.settings.is_loopback)
        self._freeze()
        logger.debug("connecting to %s", self.settings.display_url)
        started = time.monotonic()
        ws = WireConnection(self.settings, self.options.max_message_size).open()
        elapsed = time.monotonic() - started
        logger.debug("connected to %s in %.3f s", self.settings.display_url, elapsed)
        session = Session(ws, self.settings, self.options, self._plugin_manager, speed, connect_seconds=elapsed)
        return session.start()

    def connect_turns(
        self,
        realtime: None | bool | float = None,
        *,
        start_threshold: float | None = None,
        eager_end_threshold: float | None = None,
        end_threshold: float | None = None,
        end_timeout_ms: float | None = None,
        keyterms: Sequence[str] = (),
        model: str = "ink-2",
    ) -> TurnSession:
        """Open a turn-detecting session (``/stt/turns/websocket``): the model decides when turns start and end.

        The thresholds are checked here against the documented ranges and
        order (``start > eager_end > end``; end timeout 640-11200 ms);
        ``None`` leaves the server's default. The handshake happens here.

        :param realtime: pacing, as for :meth:`connect`. The turns endpoint
            expects audio in real time; it measures time in the audio it receives.
        :raises ConfigurationError: a threshold is out of range or out of order,
            the model is not a turns model, or the client knows no turns URL.
        :raises AuthenticationError: the key was refused (401/403).
        :raises RateLimitError: too many connections (429).
        :raises ConnectError: any other handshake or network failure.
        """
        turn_settings = TurnSettings(start_threshold, eager_end_threshold, end_threshold, end_timeout_ms)
        if model not in TURN_MODELS:
            raise ConfigurationError(f"the turns endpoint serves {', '.join(TURN_MODELS)}; got model={model!r}")
        url = self.endpoints.turns or _turns_url_next_to(self.settings.url)
        settings = dataclasses.replace(
            self.settings,
            url=url,
            model=model,
            keyterms=tuple(keyterms),
            turn_query=turn_settings.query(),
        )
        self._check_hosted_key(settings.url)
        speed = resolve_speed(realtime, settings.is_loopback)
        self._freeze()
        logger.debug("connecting to %s", settings.display_url)
        started = time.monotonic()
        ws = WireConnection(settings, self.options.max_message_size).open()
        elapsed = time.monotonic() - started
        session = TurnSession(
            ws, settings, self.options, self._plugin_manager, speed, turn_settings, connect_seconds=elapsed
        )
        return session.start()

    def transcribe(
        self,
        source: Any,
        *,
        mode: str = "auto",
        realtime: None | bool | float = None,
        sample_rate: int | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        progress: bool | None = None,
    ) -> TranscriptionResult:
        """Transcribe a whole input, by upload or by stream, and return the same kind of result.

        :param source: a path to an audio file, ``bytes`` in the client's
            encoding, a numpy array, or (streaming only) an iterable of such
            chunks.
        :param mode: ``"auto"`` (default) uploads with ``POST /stt`` when the
            input is whole (path, bytes, array), the model is in the
            ink-whisper family and the server offers batch (a client given
            only ``url=`` does not know it does), and streams otherwise;
            ``"batch"`` always uploads; ``"stream"`` always streams.
        :param realtime: pacing of a stream, as for :meth:`connect`.
        :param sample_rate: the rate of ``bytes`` or an array, when it differs
            from the client's.
        :param timeout: streaming: seconds the server may stay silent before
            the end (see :meth:`Session.close`). Batch: the wait for the reply,
            default 60 s, plus 10 s per MB uploaded.
        :param max_retries: batch: tries after the first on 408, 409, 429,
            5xx, ``x-should-retry: true`` and connection failures, with
            jittered back-off that honours ``Retry-After``.
        :param progress: batch: show an upload progress bar on stderr;
            default only when stderr is a terminal.
        :returns: a :class:`TranscriptionResult`; its ``mode`` says which path ran.
        :raises CartesiaSyncError: any failure; once work was done,
            ``error.partial_result`` holds what was recognised.
        """
        if choose_mode(mode, source, self.settings.model, self.endpoints) == "stream":
            return transcribe_stream(self, source, realtime=realtime, sample_rate=sample_rate, timeout=timeout)
        if self.endpoints.batch is not None:
            self._check_hosted_key(self.endpoints.batch)
        self._freeze()
        return transcribe_batch(
            self.settings,
            self.options,
            self.endpoints,
            self._plugin_manager,
            source,
            sample_rate=sample_rate,
            timeout=timeout,
            max_retries=max_retries,
            progress=progress,
        )

    def _freeze(self) -> None:
        with self._lock:
            self._frozen = True

    def _check_hosted_key(self, url: str) -> None:
        if self.settings.api_key is None and urlsplit(url).hostname == HOSTED_HOST:
            raise ConfigurationError(
                f"no API key for the hosted API: set {API_KEY_ENV} or pass api_key=; to transcribe on this machine "
                "without a key, use cartesia_sync.transcribe(..., local=True) or cartesia_sync.local.LocalServer"
            )

    def __repr__(self) -> str:
        key = "***" if self.settings.api_key is not None else None
        which = "access_token" if self.settings.has_token else "api_key"
        return f"Client(url={self.settings.display_url!r}, {which}={key}, model={self.settings.model!r})"


def _turns_url_next_to(stream_url: str) -> str:
    """The turns endpoint beside a streaming URL given alone (``.../stt/websocket`` → ``.../stt/turns/websocket``)."""
    parts = urlsplit(stream_url)
    path = parts.path.rstrip("/")
    if not path.endswith("/stt/websocket"):
        raise ConfigurationError(
            f"no turns endpoint is known for {parts.scheme}://{parts.netloc}{parts.path}: pass base_url= "
            "(the turns endpoint is <base_url>/stt/turns/websocket)"
        )
    return parts._replace(path=path[: -len("/stt/websocket")] + "/stt/turns/websocket", query="").geturl()


def _credential(api_key: str | None, access_token: str | None) -> ApiKey | None:
    """The key or token to send: a token given replaces the key from the environment; both given is an error."""
    if access_token is not None:
        if api_key is not None:
            raise ConfigurationError("pass api_key= or access_token=, not both: a token stands in for the key")
        if not isinstance(access_token, str) or not access_token:
            raise ConfigurationError("access_token must be a non-empty string, as create_access_token() returns it")
        return AccessToken(access_token)
    raw_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    return ApiKey(raw_key) if raw_key else None
