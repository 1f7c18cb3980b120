"""WebSocket frames the session writes itself, and the socket class that reads them.

Every frame the session writes goes through :func:`write_encoded`, under
websocket-client's send lock: audio (several frames per write when the queue
is deep), commands and pings from the sender, pongs and the close frame
(through :class:`StreamSocket`) from the receiver.
The socket has a short timeout (:data:`SOCKET_POLL`), so a blocked write or an
idle read comes back now and then: a writer can give up when it must (the
session ends, the peer stopped reading), and the receiver can notice that the
server has gone silent. websocket-client keeps a partly read frame across
such timeouts, so reads simply resume.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import websocket

__all__ = [
    "OPCODE_TEXT",
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_PING",
    "OPCODE_PONG",
    "SOCKET_POLL",
    "StreamSocket",
    "close_frame_status",
    "encode_binary_frames",
    "encode_frame",
    "write_encoded",
    "write_frame",
    "xor_mask",
]

#: Opcodes (RFC 6455 section 5.2).
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA

#: The socket timeout: how often a blocked write or an idle read comes back to look around.
SOCKET_POLL = 0.5

#: What a socket write raises when the send buffer stayed full for ``SOCKET_POLL``.
_WRITE_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, socket.timeout)

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


class _MaskKeys:
    """Fresh mask keys from the operating system's random source, fetched many at a time.

    RFC 6455 wants every frame's key unpredictable, so they come from
    ``os.urandom``. Fetching them 1,024 at a time turns one system call per
    frame into one per 1,024 frames. That matters with hundreds of paced
    sessions: every system call gives up the interpreter lock, and taking it
    back among many busy threads is what makes a frame late.
    """

    _BATCH = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, count: int = 1) -> bytes:
        """``count`` keys, 4 bytes each, never handed out before."""
        size = 4 * count
        with self._lock:
            if self._offset + size > len(self._buffer):
                self._buffer = os.urandom(max(self._BATCH, size))
                self._offset = 0
            start = self._offset
            self._offset += size
            return self._buffer[start:start + size]


mask_keys = _MaskKeys()


def xor_mask(key: bytes, data: bytes) -> bytes:
    """Mask (or unmask) ``data`` with the 4-byte ``key``, as RFC 6455 section 5.3 says.

    Works on 64-bit words: a 100 ms frame at 16 kHz is 400 of them, below the
    size at which numpy lets go of the interpreter lock, so a paced frame is
    masked without a second wait for it.
    """
    whole = len(data) - len(data) % 8
    key8 = np.frombuffer(key * 2, dtype=np.uint64)[0]
    masked = (np.frombuffer(data, dtype=np.uint64, count=whole // 8) ^ key8).tobytes()
    tail = bytes(b ^ key[i % 4] for i, b in enumerate(data[whole:]))
    return masked + tail


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One whole, masked client frame: header, a fresh mask key and masked payload (RFC 6455 section 5.2)."""
    key = mask_keys.take()
    return _header(opcode, len(payload)) + key + xor_mask(key, payload)


def encode_binary_frames(payloads: Sequence[bytes]) -> bytes:
    """Several binary frames back to back, each with its own fresh mask key.

    When every payload is a whole number of 32-bit words (fixed-size audio
    frames always are at 16-bit and an even sample count), all of them are
    masked in one numpy operation: that is most of what a deep queue of small
    frames would otherwise cost per frame.
    """
    count = len(payloads)
    if count == 1 or any(len(payload) % 4 for payload in payloads):
        return b"".join([encode_frame(OPCODE_BINARY, payload) for payload in payloads])
    keys = mask_keys.take(count)
    words = np.frombuffer(b"".join(payloads), dtype=np.uint32)
    word_counts = [len(payload) // 4 for payload in payloads]
    masks = np.repeat(np.frombuffer(keys, dtype=np.uint32), word_counts)
    masked = memoryview((words ^ masks).tobytes())
    parts: List[Union[bytes, memoryview]] = []
    start = 0
    for index, payload in enumerate(payloads):
        end = start + len(payload)
        parts += (_header(OPCODE_BINARY, len(payload)), keys[4 * index:4 * index + 4], masked[start:end])
        start = end
    return b"".join(parts)


def write_frame(ws: websocket.WebSocket, opcode: int, payload: bytes, while_blocked: Callable[[], None]) -> None:
    """Write one masked frame, under websocket-client's send lock.

    The frame is built here, with numpy masking, instead of through
    websocket-client's general ``ABNF`` path: for the many small audio frames
    of a session that path costs more than the socket write itself.

    :param while_blocked: called each time the send buffer stayed full for
        :data:`SOCKET_POLL`; it may raise to give up, and the connection must
        then be dropped (part of a frame may have gone out).
    :raises websocket.WebSocketConnectionClosedException: the socket is already closed.
    :raises OSError: the write failed.
    """
    write_encoded(ws, encode_frame(opcode, payload), while_blocked)


def write_encoded(ws: websocket.WebSocket, data: bytes, while_blocked: Callable[[], None]) -> None:
    """Write already encoded frames (:func:`encode_frame`, :func:`encode_binary_frames`) in one go.

    Same lock, errors and ``while_blocked`` as :func:`write_frame`; several
    frames in one write cost one system call instead of one each.
    """
    view = memoryview(data)
    with ws.lock:
        sock = ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("the socket is already closed")
        while view:
            try:
                sent = sock.send(view)
            except _WRITE_BLOCKED:
                while_blocked()
                continue
            view = view[sent:]


def _header(opcode: int, size: int) -> bytes:
    if size < 126:
        return bytes((0x80 | opcode, 0x80 | size))
    if size < 65536:
        return _HEADER_16.pack(0x80 | opcode, 0xFE, size)
    return _HEADER_64.pack(0x80 | opcode, 0xFF, size)


class StreamSocket(websocket.WebSocket):
    """websocket-client's ``WebSocket``, with the frames it writes on its own (pong, close) written patiently.

    websocket-client answers a ping and echoes a close frame from inside
    ``recv_data_frame``, on the receiver thread. Written the usual way, a full
    send buffer would make them fail after one socket timeout; here they wait
    up to :attr:`write_patience` seconds for room, then give up with a
    connection error (the peer stopped reading).
    """

    write_patience: float = 10.0

    def pong(self, payload: Union[str, bytes] = "") -> None:
        self._write_patiently(OPCODE_PONG, payload.encode() if isinstance(payload, str) else payload, "a pong")

    def send_close(self, status: int = 1000, reason: bytes = b"") -> None:
        if not 0 <= status < 65536:
            raise ValueError("the close code must be between 0 and 65535")
        self.connected = False
        self._write_patiently(OPCODE_CLOSE, struct.pack("!H", status) + reason, "the close frame")

    def _write_patiently(self, opcode: int, payload: bytes, what: str) -> None:
        deadline = time.monotonic() + self.write_patience

        def while_blocked() -> None:
            if time.monotonic() >= deadline:
                raise websocket.WebSocketConnectionClosedException(
                    f"could not write {what} for {self.write_patience:g} s: the peer stopped reading"
                )

        write_frame(self, opcode, payload, while_blocked)


def close_frame_status(payload: bytes) -> Tuple[Optional[int], str]:
    """Split a close frame's payload into ``(code, reason)``; ``(None, "")`` when empty."""
    if len(payload) < 2:
        return None, ""
    code = int.from_bytes(payload[:2], "big")
    return code, payload[2:].decode("utf-8", errors="replace")
