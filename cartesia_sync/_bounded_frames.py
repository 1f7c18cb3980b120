"""Reading frames within a size limit: websocket-client's frame reader, with each frame's length checked first.

websocket-client reads a frame's whole payload, whatever length its header
announces, and joins the fragments of a message without a limit (and by
copying the whole message again for every fragment). A server, or anything
between it and us, could make the client allocate without bound: a header
announcing 1 TiB makes it read until memory runs out. Here the announced
length is checked as soon as the header is read, before a byte of payload,
against the limit for a message (the fragments already kept count too), a
message may not be split into more than :data:`MAX_FRAGMENTS` frames, and a
control frame may not announce more than RFC 6455 allows.

These classes plug into websocket-client's ``WebSocket`` as its
``frame_buffer`` and ``cont_frame`` (see ``_wire._StreamSocket``); the
methods overridden, ``recv_length`` and ``add``, and the attributes used,
``header``, ``length``, ``cont_data`` and ``recving_frames``, are pinned by
``tests/test_wire_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websocket._abnf import ABNF, continuous_frame, frame_buffer

from .errors import ProtocolError

__all__ = ["MAX_FRAGMENTS", "BoundedFrames", "Fragments", "MessageRefused"]

#: RFC 6455 section 5.5: a control frame's payload is at most this long.
CONTROL_PAYLOAD_LIMIT = 125

#: The most frames one message may be split into.
MAX_FRAGMENTS = 4096

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009

_OPCODE_INDEX = 4  # in websocket-client's frame_buffer.header tuple: (fin, rsv1, rsv2, rsv3, opcode, mask, length)


class MessageRefused(Exception):
    """A frame was refused from its header: ``error`` says why, ``close_code`` is what to tell the server."""

    def __init__(self, error: ProtocolError, close_code: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.close_code = close_code


class Fragments(continuous_frame):
    """The fragments of the message being received, joined in one growing buffer (amortised, not quadratic)."""

    def __init__(self) -> None:
        super().__init__(False, True)
        self.count = 0  # fragments of the current message so far

    @property
    def size(self) -> int:
        """Bytes of the message received so far (0 between messages)."""
        return len(self.cont_data[1]) if self.cont_data else 0

    def add(self, frame: ABNF) -> None:
        if self.cont_data:
            self.cont_data[1] += frame.data
            self.count += 1
        else:
            if frame.opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                self.recving_frames = frame.opcode
            data = frame.data
            self.cont_data = [frame.opcode, bytearray(data.encode() if isinstance(data, str) else data)]
            self.count = 1
        if frame.fin:
            self.recving_frames = None


class BoundedFrames(frame_buffer):
    """websocket-client's frame reader, refusing a frame whose announced length breaks a limit.

    :param recv: reads from the socket (websocket-client's ``WebSocket._recv``).
    :param limit: the largest message, in bytes.
    :param fragments: the fragments of the current message received so far.
    """

    def __init__(self, recv: Callable[[int], bytes], limit: int, fragments: Fragments) -> None:
        super().__init__(recv, True)
        self.limit = limit
        self._fragments = fragments

    def recv_length(self) -> None:
        super().recv_length()
        header: Any = self.header
        opcode = header[_OPCODE_INDEX]
        length = self.length or 0
        if opcode >= ABNF.OPCODE_CLOSE:
            if length > CONTROL_PAYLOAD_LIMIT:
                raise MessageRefused(
                    ProtocolError(
                        f"the server sent a control frame (opcode {opcode:#x}) announcing {length} bytes; "
                        f"RFC 6455 allows at most {CONTROL_PAYLOAD_LIMIT}, so the connection was closed"
                    ),
                    CLOSE_PROTOCOL_ERROR,
                )
            return
        continued = opcode == ABNF.OPCODE_CONT and self._fragments.recving_frames is not None
        if continued and self._fragments.count >= MAX_FRAGMENTS:
            raise MessageRefused(
                ProtocolError(
                    f"the server split a message into more than {MAX_FRAGMENTS} fragments; the connection was "
                    "closed, as no server needs that many (empty fragments could keep the reader busy for ever)"
                ),
                CLOSE_TOO_BIG,
            )
        kept = self._fragments.size if continued else 0
        if kept + length > self.limit:
            so_far = f" after {kept} bytes of earlier fragments" if kept else ""
            raise MessageRefused(
                ProtocolError(
                    f"the server sent a message of at least {kept + length} bytes (a frame announcing {length} "
                    f"bytes{so_far}), over max_message_size={self.limit}; the connection was closed without "
                    "reading it. Raise max_message_size if the server's messages are legitimately this large",
                    raw=f"frame header: opcode {opcode:#x}, length {length}",
                ),
                CLOSE_TOO_BIG,
            )
