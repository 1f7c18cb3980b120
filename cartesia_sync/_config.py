"""Connection settings: validation, the handshake URL and headers, loopback detection."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._secrets import AccessToken, ApiKey
from .errors import ConfigurationError

__all__ = [
    "API_KEY_ENV",
    "URL_ENV",
    "DEFAULT_URL",
    "SessionOptions",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "resolve_speed",
    "DEFAULT_CARTESIA_VERSION",
    "ENCODINGS",
    "BUFFER_POLICIES",
    "ConnectionSettings",
    "is_loopback_host",
]

#: Where the API key and the endpoint come from when not passed.
API_KEY_ENV = "CARTESIA_API_KEY"
URL_ENV = "CARTESIA_STT_URL"

DEFAULT_URL = "wss://api.cartesia.ai/stt/websocket"
HOSTED_HOST = urlsplit(DEFAULT_URL).hostname
#: The newest documented API version; from it on, errors are structured JSON.
DEFAULT_CARTESIA_VERSION = "2026-03-01"

#: What a full send buffer does: make ``send()`` wait, or discard the oldest audio.
BUFFER_POLICIES = ("block", "drop_oldest")

#: Wire encodings the endpoint accepts, with their bytes per sample.
ENCODINGS: dict[str, int] = {
    "pcm_s16le": 2,
    "pcm_s32le": 4,
    "pcm_f16le": 2,
    "pcm_f32le": 4,
    "pcm_mulaw": 1,
    "pcm_alaw": 1,
}

#: The range of ``max_message_size``: room for any error message, and no more than memory can take.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
MIN_MESSAGE_SIZE = 1024
MAX_MESSAGE_SIZE = 1024**3

END_COMMANDS = ("done", "close")
AUTH_MODES = ("header", "bearer", "query")
MAX_KEYTERMS = 100


def is_loopback_host(host: str) -> bool:
    """True only for a literal loopback address or the name ``localhost`` itself: never a DNS answer.

    This decides whether a key may travel over plain ``ws://``, so it trusts
    nothing a resolver or a hosts file says: a name that resolves to 127.0.0.1
    today (``localhost.localdomain``, the machine's own name, ``x.localhost``,
    ``127.0.0.1.nip.io``) may resolve elsewhere tomorrow or on another machine.
    Loopback means an address in 127.0.0.0/8, ``::1`` (with or without a scope),
    an IPv4-mapped ``::ffff:127.x.y.z``, or ``localhost`` in any case with at most
    one trailing dot; brackets around an IPv6 address are allowed. Shorthand
    spellings that some resolvers accept (``127.1``, ``0x7f.0.0.1``,
    ``2130706433``) are not addresses here and are refused.
    """
    if not isinstance(host, str):
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.IPv6Address(host[1:-1]) if bracketed else ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to open one streaming connection, already validated.

    Built by :class:`cartesia_sync.Client`; its ``repr`` never shows the key.
    ``api_key`` holds the credential: an :class:`ApiKey`, or an
    :class:`AccessToken` (a subclass, so that everything that masks a key
    masks a token too).
    """

    url: str
    api_key: ApiKey | None
    model: str = "ink-whisper"
    language: str | None = "en"
    encoding: str = "pcm_s16le"
    sample_rate: int = 16000
    min_volume: float | None = None
    max_silence_duration_secs: float | None = None
    keyterms: tuple[str, ...] = ()
    cartesia_version: str = DEFAULT_CARTESIA_VERSION
    auth: str = "header"
    end_command: str = "done"
    connect_timeout: float = 10.0
    ca_certs: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = field(default=())
    #: The turns endpoint's ``turn_*`` parameters; ``None`` for the streaming endpoint.
    turn_query: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        self._check()

    def _check_headers(self) -> None:
        """Refuse anything that would change the handshake's header lines, before any socket opens."""
        if self.api_key is not None:
            _check_token(self.api_key.reveal(), self.credential_name, secret=True)
        _check_token(self.cartesia_version, "cartesia_version")
        for name, value in self.extra_headers:
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ConfigurationError(
                    f"extra header name {_shown(name)} is not a valid HTTP header name: use letters, digits and "
                    "!#$%&'*+-.^_`|~ only (no spaces, colons or control characters)"
                )
            _check_header_value(value, f"the value of extra header {name!r}")

    # -- validation -------------------------------------------------------

    def _check(self) -> None:
        self._check_headers()
        parts = urlsplit(self.url)
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError("the URL must not carry a user name or password; pass api_key= instead")
        if parts.scheme not in ("ws", "wss"):
            raise ConfigurationError(
                f"the URL scheme must be ws:// or wss://, got {parts.scheme + '://' if parts.scheme else 'none'} "
                f"in {self.display_url!r}; the hosted endpoint is {DEFAULT_URL}"
            )
        if not parts.hostname:
            raise ConfigurationError(f"the URL {self.display_url!r} has no host")
        try:
            _ = parts.port  # urlsplit checks the port only when asked
        except ValueError as exc:
            raise ConfigurationError(f"the URL {self.display_url!r} has a bad port: {exc}") from None
        if self.api_key is not None and parts.scheme == "ws" and not is_loopback_host(parts.hostname):
            raise ConfigurationError(
                f"refusing to send {self.credential_name_with_article} over unencrypted ws:// to {parts.hostname}; "
                "use wss://, or ws:// only to a loopback address (127.0.0.1, ::1, localhost); other names are "
                "not trusted with a credential over ws://, even when they resolve to loopback"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ConfigurationError("model must be a non-empty string such as 'ink-whisper'")
        if self.encoding not in ENCODINGS:
            raise ConfigurationError(f"unknown encoding {self.encoding!r}; expected one of {', '.join(ENCODINGS)}")
        if (
            not isinstance(self.sample_rate, int)
            or isinstance(self.sample_rate, bool)
            or not 8000 <= self.sample_rate <= 48000
        ):
            raise ConfigurationError(
                f"sample_rate must be an integer between 8000 and 48000 Hz, got {self.sample_rate!r}; "
                "16000 is recommended"
            )
        for name in ("min_volume", "max_silence_duration_secs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
                raise ConfigurationError(f"{name} must be a non-negative number, got {value!r}")
        if len(self.keyterms) > MAX_KEYTERMS:
            raise ConfigurationError(f"at most {MAX_KEYTERMS} keyterms are allowed, got {len(self.keyterms)}")
        for term in self.keyterms:
            if not isinstance(term, str) or not term.strip():
                raise ConfigurationError(f"each keyterm must be a non-empty string, got {term!r}")
        if self.auth not in AUTH_MODES:
            raise ConfigurationError(f"auth must be one of {AUTH_MODES}, got {self.auth!r}")
        if self.end_command not in END_COMMANDS:
            raise ConfigurationError(f"end_command must be one of {END_COMMANDS}, got {self.end_command!r}")
        timeout = self.connect_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigurationError(
                f"connect_timeout must be a positive number of seconds, got {self.connect_timeout!r}"
            )
        if self.ca_certs is not None and not os.path.exists(self.ca_certs):
            raise ConfigurationError(f"ca_certs file {self.ca_certs!r} does not exist")

    # -- derived values ---------------------------------------------------

    @property
    def host(self) -> str:
        """The host name of the endpoint."""
        return urlsplit(self.url).hostname or ""

    @property
    def is_loopback(self) -> bool:
        """True when the endpoint is on this machine."""
        return is_loopback_host(self.host)

    @property
    def has_token(self) -> bool:
        """True when the credential is an access token rather than an API key."""
        return isinstance(self.api_key, AccessToken)

    @property
    def credential_name(self) -> str:
        """``"the access token"`` or ``"the API key"``, for messages."""
        return "the access token" if self.has_token else "the API key"

    @property
    def credential_name_with_article(self) -> str:
        """``"an access token"`` or ``"an API key"``, for messages."""
        return "an access token" if self.has_token else "an API key"

    def http_auth(self) -> dict[str, str]:
        """The credential's header for an HTTP request (batch, tokens).

        A token goes as ``Authorization: Bearer``; a key as ``Authorization:
        Bearer`` with ``auth="bearer"``, else as ``X-API-Key``. ``auth="query"``
        is for WebSockets only (the API documents ``api_key=`` there alone),
        and a URL with a key in it would reach HTTP logs, so HTTP requests send
        the header instead.
        """
        if self.api_key is None:
            return {}
        raw = self.api_key.reveal()
        if self.has_token or self.auth == "bearer":
            return {"Authorization": f"Bearer {raw}"}
        return {"X-API-Key": raw}

    @property
    def bytes_per_second(self) -> int:
        """Bytes of mono audio per second on the wire."""
        return ENCODINGS[self.encoding] * self.sample_rate

    def _query(self, *, with_key: bool) -> list[tuple[str, str]]:
        query = parse_qsl(urlsplit(self.url).query, keep_blank_values=True)
        query.append(("model", self.model))
        turns = self.turn_query is not None  # the turns endpoint has no language, min_volume or silence setting
        if self.language and not turns:
            query.append(("language", self.language))
        query.append(("encoding", self.encoding))
        query.append(("sample_rate", str(self.sample_rate)))
        if self.min_volume is not None and not turns:
            query.append(("min_volume", _number(self.min_volume)))
        if self.max_silence_duration_secs is not None and not turns:
            query.append(("max_silence_duration_secs", _number(self.max_silence_duration_secs)))
        for term in self.keyterms:
            query.append(("keyterm", term))
        query.extend(self.turn_query or ())
        if self.has_token:  # a WebSocket takes a token in the URL only (as browsers send it)
            if with_key:
                query.append(("access_token", self.api_key.reveal()))  # type: ignore[union-attr]
        elif self.auth == "query" and self.api_key is not None:
            query.append(("cartesia_version", self.cartesia_version))
            if with_key:
                query.append(("api_key", self.api_key.reveal()))
        return query

    def _with_query(self, query: list[tuple[str, str]], suffix: str = "") -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        netloc = f"{host}:{port}" if port is not None else host
        encoded = urlencode(query, quote_via=_quote)  # type: ignore[arg-type]  # quote's own signature
        return urlunsplit((parts.scheme, netloc, parts.path or "/", encoded + suffix, ""))

    def handshake_url(self) -> str:
        """The URL to open. Carries the key only when ``auth="query"`` was chosen, and a token always."""
        return self._with_query(self._query(with_key=True))

    @property
    def display_url(self) -> str:
        """The handshake URL with any key masked and no credentials: safe for logs and messages."""
        masked = ""
        if self.has_token:
            masked = "&access_token=***"
        elif self.auth == "query" and self.api_key is not None:
            masked = "&api_key=***"
        try:
            return self._with_query(self._query(with_key=False), masked)
        except Exception:  # during validation a setting may be unusable; show the bare endpoint
            return self._with_query([])

    def handshake_headers(self) -> dict[str, str]:
        """The headers to send with the handshake, the key among them."""
        headers = {"Cartesia-Version": self.cartesia_version}
        if self.api_key is not None and not self.has_token:
            if self.auth == "header":
                headers["X-API-Key"] = self.api_key.reveal()
            elif self.auth == "bearer":
                headers["Authorization"] = f"Bearer {self.api_key.reveal()}"
        headers.update(dict(self.extra_headers))
        return headers

    def __repr__(self) -> str:
        key = "***" if self.api_key is not None else None
        return (
            f"ConnectionSettings(url={self.display_url!r}, api_key={key}, model={self.model!r}, "
            f"encoding={self.encoding!r}, sample_rate={self.sample_rate})"
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quote(text: str, safe: str = "", encoding: str | None = None, errors: str | None = None) -> str:
    from urllib.parse import quote

    return quote(text, safe="", encoding=encoding, errors=errors)


@dataclass(frozen=True)
class SessionOptions:
    """How a session behaves, as opposed to where it connects. All times in seconds.

    :param frame_duration: audio per binary frame (the API suggests 0.1).
    :param max_buffer_seconds: audio the send buffer holds before its policy applies.
    :param buffer_policy: ``"block"`` (``send()`` waits up to ``send_timeout``) or
        ``"drop_oldest"`` (for live sources: discard the oldest audio and count it).
    :param send_timeout: the longest ``send()`` waits for room in the buffer.
    :param keepalive_interval: after this long without sending, send one frame
        of silence so the server keeps the socket; ``None`` to never do so.
    :param finalize_timeout: default wait for ``flush_done``.
    :param close_timeout: default wait for ``done`` when closing.
    :param close_grace: how long to wait for the server's close frame after ``done``.
    :param join_timeout: how long to wait for each thread to stop.
    :param raise_errors: re-raise background errors to the caller (see ``Session``).
    :param reconnect: after a transient failure (a dropped or reset connection,
        a dead peer, close codes 1001/1006/1011/1012/1013/1014, a 5xx error)
        open a new connection and resend the audio the server had not
        acknowledged; ``False`` ends the session with the error instead.
    :param reconnect_attempts: handshakes tried per outage before giving up.
    :param reconnect_delay: the first back-off delay; each further attempt
        doubles it, up to ``reconnect_max_delay``, with full jitter.
    :param reconnect_max_delay: the longest back-off delay.
    :param replay_seconds: the most unacknowledged audio kept for resending;
        older audio is forgotten and reported as a gap if a reconnect needs it.
    :param ping_interval: after this long without hearing from the server,
        send a WebSocket ping; ``None`` to never ping.
    :param ping_timeout: the server is declared dead (half-open connection)
        when nothing at all arrived for ``ping_interval + ping_timeout``
        seconds; ``None`` to never give up on a silent server.
    :param max_message_size: the largest server message read, in bytes (all
        its fragments together). A frame whose header announces more ends the
        session with a :class:`~cartesia_sync.ProtocolError` before its payload
        is read, so a server cannot make the client buffer without bound.
    """

    frame_duration: float = 0.1
    max_buffer_seconds: float = 30.0
    buffer_policy: str = "block"
    send_timeout: float = 30.0
    keepalive_interval: float | None = 10.0
    finalize_timeout: float = 10.0
    close_timeout: float = 10.0
    close_grace: float = 2.0
    join_timeout: float = 5.0
    raise_errors: bool = True
    reconnect: bool = True
    reconnect_attempts: int = 5
    reconnect_delay: float = 0.5
    reconnect_max_delay: float = 10.0
    replay_seconds: float = 30.0
    ping_interval: float | None = 10.0
    ping_timeout: float | None = 10.0
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        if not (isinstance(self.frame_duration, (int, float)) and 0.005 <= self.frame_duration <= 1.0):
            raise ConfigurationError(
                f"frame_duration must be between 0.005 and 1.0 seconds, got {self.frame_duration!r}; 0.1 is recommended"
            )
        if self.buffer_policy not in BUFFER_POLICIES:
            raise ConfigurationError(f"buffer_policy must be 'block' or 'drop_oldest', got {self.buffer_policy!r}")
        for name in (
            "max_buffer_seconds",
            "send_timeout",
            "finalize_timeout",
            "close_timeout",
            "close_grace",
            "join_timeout",
            "reconnect_delay",
            "reconnect_max_delay",
            "replay_seconds",
        ):
            value = getattr(self, name)
            if not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            ):
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_buffer_seconds < self.frame_duration:
            raise ConfigurationError("max_buffer_seconds must hold at least one frame")
        for name in ("keepalive_interval", "ping_interval", "ping_timeout"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            ):
                raise ConfigurationError(f"{name} must be a positive number of seconds or None, got {value!r}")
        size = self.max_message_size
        if not (isinstance(size, int) and not isinstance(size, bool) and MIN_MESSAGE_SIZE <= size <= MAX_MESSAGE_SIZE):
            raise ConfigurationError(
                f"max_message_size must be a whole number of bytes between {MIN_MESSAGE_SIZE} and {MAX_MESSAGE_SIZE} "
                f"(1 GiB), got {size!r}; the default, {DEFAULT_MAX_MESSAGE_SIZE}, holds any message the API sends"
            )
        if not isinstance(self.reconnect, bool):
            raise ConfigurationError(f"reconnect must be True or False, got {self.reconnect!r}")
        if not (
            isinstance(self.reconnect_attempts, int)
            and not isinstance(self.reconnect_attempts, bool)
            and self.reconnect_attempts >= 1
        ):
            raise ConfigurationError(
                f"reconnect_attempts must be a whole number of at least 1, got {self.reconnect_attempts!r}"
            )


#: An HTTP header name (RFC 9110 section 5.1: a token).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _shown(value: object) -> str:
    return repr(value)[:60]


def _flaw(text: str) -> str | None:
    """What makes ``text`` unsafe in a header line, or ``None``."""
    for char in text:
        if char in "\r\n":
            return "a line break (CR or LF), which would start a new header line"
        if char == "\0":
            return "a NUL character"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"a control character (U+{ord(char):04X})"
        if ord(char) > 0x7E:
            return f"a non-ASCII character (U+{ord(char):04X})"
    return None


def _check_token(text: object, what: str, *, secret: bool = False) -> None:
    """A credential or version: printable ASCII, no whitespace anywhere; the message never shows a secret."""
    if not isinstance(text, str):
        raise ConfigurationError(f"{what} must be a string, not {type(text).__name__}")
    shown = "" if secret else f" ({_shown(text)})"
    if text.endswith(("\n", "\r")):
        raise ConfigurationError(
            f"{what}{shown} ends with a line break, as a value read from a file often does: remove it "
            "(for example with .strip()); it is not removed silently, so that what is sent is what you gave"
        )
    flaw = _flaw(text)
    if flaw is not None:
        raise ConfigurationError(f"{what}{shown} contains {flaw}; it cannot be sent in a header")
    if any(char.isspace() for char in text):
        where = "leading or trailing" if text != text.strip() else "interior"
        raise ConfigurationError(f"{what}{shown} contains {where} whitespace; check that it was copied whole and alone")


def _check_header_value(text: object, what: str) -> None:
    """An extra header's value: printable ASCII; interior spaces are allowed (RFC 9110), not at the ends."""
    if not isinstance(text, str):
        raise ConfigurationError(f"{what} must be a string, not {type(text).__name__}")
    flaw = _flaw(text)
    if flaw is not None:
        raise ConfigurationError(f"{what} ({_shown(text)}) contains {flaw}; it cannot be sent in a header")
    if text != text.strip():
        raise ConfigurationError(f"{what} ({_shown(text)}) has leading or trailing whitespace; remove it")


def resolve_speed(realtime: object, loopback: bool) -> float | None:
    """Turn the ``realtime`` argument into a pacing factor, ``None`` meaning unpaced.

    ``None`` (the default) paces at 1x for remote servers and not at all on
    loopback; ``True`` is 1x; ``False`` is unpaced; a positive number is a
    speed factor.
    """
    if realtime is None:
        return None if loopback else 1.0
    if realtime is True:
        return 1.0
    if realtime is False:
        return None
    if isinstance(realtime, (int, float)) and math.isfinite(realtime) and realtime > 0:
        return float(realtime)
    raise ConfigurationError(f"realtime must be None, True, False or a positive speed factor, got {realtime!r}")
