"""Records of what each connection showed the local server, for tests that check what a client sent."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Received", "ConnectionRecord"]


@dataclass(frozen=True)
class Received:
    """One frame the server received: ``kind`` is ``"audio"`` or ``"text"``; ``at`` is monotonic time."""

    at: float
    kind: str
    data: object


@dataclass
class ConnectionRecord:
    """Everything one connection showed the server: handshake, frames, audio and how it ended.

    Unless the server was made with ``record_secrets=True``, the API key is
    not recorded: the ``x-api-key`` and ``authorization`` headers and the
    ``api_key`` query parameter are stored as ``***``.
    """

    path: str = ""
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[Received] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    close_code: int | None = None
    #: the text fields of a batch upload (``model``, ``language``...), by name
    form: dict[str, list[str]] = field(default_factory=dict)
    #: the size of a batch upload's file, in bytes
    upload_bytes: int = 0
    #: when the handshake or request arrived (``time.monotonic()``, as ``Received.at``)
    opened_at: float = field(default_factory=time.monotonic)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def add(self, kind: str, data: object) -> None:
        """Record one received frame."""
        self.frames.append(Received(time.monotonic(), kind, data))
        if kind == "audio":
            assert isinstance(data, (bytes, bytearray))
            self.audio += data

    @property
    def texts(self) -> list[str]:
        """The text frames (commands), in order."""
        return [f.data for f in self.frames if f.kind == "text"]  # type: ignore[misc]

    @property
    def audio_frames(self) -> list[Received]:
        """The binary frames, in order."""
        return [f for f in self.frames if f.kind == "audio"]

    def query_dict(self) -> dict[str, str]:
        """The query parameters as a dict (the last value of a repeated one wins)."""
        return dict(self.query)

    def sha256(self) -> str:
        """Checksum of all audio received."""
        return hashlib.sha256(bytes(self.audio)).hexdigest()

    def wait(self, timeout: float = 5.0) -> bool:
        """Wait until the connection has ended; False on timeout."""
        return self.finished.wait(timeout)
