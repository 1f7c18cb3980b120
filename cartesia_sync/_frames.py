"""The bytes of the WebSocket frames a client writes (RFC 6455 section 5): headers, mask keys, masking.

Pure functions, no socket: :mod:`.wire` writes what they make. Every frame
gets a fresh mask key from the operating system's random source, and a run of
audio frames is masked in one numpy operation.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence

import numpy as np

__all__ = [
    "OPCODE_TEXT",
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_PING",
    "OPCODE_PONG",
    "close_frame_status",
    "encode_binary_frames",
    "encode_frame",
    "xor_mask",
]

#: Opcodes (RFC 6455 section 5.2).
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA

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
            return self._buffer[start : start + size]


mask_keys = _MaskKeys()


def xor_mask(key: bytes, data: bytes) -> bytes:
    """Mask (or unmask) ``data`` with the 4-byte ``key``, as RFC 6455 section 5.3 says.

    Works on 64-bit words: a 100 ms frame at 16 kHz is 400 of them, below the
    size at which numpy lets go of the interpreter lock, so a paced frame is
    masked without a second wait for it.
    """
    whole = len(data) - len(data) % 8
    key8 = np.frombuffer(key * 2, dtype=np.uint64)[0]
    masked: bytes = (np.frombuffer(data, dtype=np.uint64, count=whole // 8) ^ key8).tobytes()
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
    parts: list[bytes | memoryview] = []
    start = 0
    for index, payload in enumerate(payloads):
        end = start + len(payload)
        parts += (_header(OPCODE_BINARY, len(payload)), keys[4 * index : 4 * index + 4], masked[start:end])
        start = end
    return b"".join(parts)


def _header(opcode: int, size: int) -> bytes:
    if size < 126:
        return bytes((0x80 | opcode, 0x80 | size))
    if size < 65536:
        return _HEADER_16.pack(0x80 | opcode, 0xFE, size)
    return _HEADER_64.pack(0x80 | opcode, 0xFF, size)


def close_frame_status(payload: bytes) -> tuple[int | None, str]:
    """Split a close frame's payload into ``(code, reason)``; ``(None, "")`` when empty."""
    if len(payload) < 2:
        return None, ""
    code = int.from_bytes(payload[:2], "big")
    return code, payload[2:].decode("utf-8", errors="replace")
