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

from ._config import (
    API_KEY_ENV,
    DEFAULT_CARTESIA_VERSION,
    DEFAULT_URL,
    HOSTED_HOST,
    URL_ENV,
    ConnectionSettings,
    SessionOptions,
    resolve_speed,
)
from ._plugin_manager import create_plugin_manager, list_plugins, register_plugin
from ._secrets import ApiKey
from ._session import Session
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
        in the ``X-API-Key`` header (or, with ``auth="query"``, in the URL).
        Never shown in a repr, log line or error message.
    :param url: the full endpoint; default ``$CARTESIA_STT_URL`` or
        ``wss://api.cartesia.ai/stt/websocket``.
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
    :param auth: ``"header"`` (default) or ``"query"`` (key in the URL, for
        proxies that strip headers; avoid otherwise).
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
        raw_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
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
        self.settings = ConnectionSettings(
            url=url or os.environ.get(URL_ENV) or DEFAULT_URL,
            api_key=ApiKey(raw_key) if raw_key else None,
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
        if self.settings.api_key is None and urlsplit(self.settings.url).hostname == HOSTED_HOST:
            raise ConfigurationError(
                f"no API key for the hosted API: set {API_KEY_ENV} or pass api_key=; to transcribe on this machine "
                "without a key, use cartesia_sync.transcribe(..., local=True) or cartesia_sync.local.LocalServer"
            )
        speed = resolve_speed(realtime, self.settings.is_loopback)
        with self._lock:
            self._frozen = True
        logger.debug("connecting to %s", self.settings.display_url)
        started = time.monotonic()
        ws = WireConnection(self.settings, self.options.max_message_size).open()
        elapsed = time.monotonic() - started
        logger.debug("connected to %s in %.3f s", self.settings.display_url, elapsed)
        session = Session(ws, self.settings, self.options, self._plugin_manager, speed, connect_seconds=elapsed)
        return session.start()

    def __repr__(self) -> str:
        key = "***" if self.settings.api_key is not None else None
        return f"Client(url={self.settings.display_url!r}, api_key={key}, model={self.settings.model!r})"
