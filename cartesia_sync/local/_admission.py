"""Admission: how many sockets a local server holds, in the handshake and in sessions, and ending them all at stop.

The ``websockets`` sync server starts a thread for every TCP connection it
accepts and waits for its handshake for ``open_timeout`` seconds. Left alone,
a client could hold any number of threads with sockets that never send a
request, and any number of sessions with sockets that never send audio. So:

- at most ``max_connections`` sockets may wait in the handshake at once; more
  are answered ``503`` at once and closed (their thread ends within
  :data:`REFUSE_READ_SECONDS`, or at once when that many refusals are
  already waiting for their requests);
- at most ``max_connections`` sessions may be open at once; the handshake of
  one more is refused with ``429 concurrency_limited``, as the hosted API does;
- every socket gets a send timeout (``write_timeout``): a client that stops
  reading is disconnected when a message to it has waited that long, instead
  of holding its thread (and, at :meth:`LocalServer.stop`, the server) forever.
  It is the kernel's ``SO_SNDTIMEO``, not :meth:`socket.settimeout`: before
  version 17 websockets reads with a blocking ``recv()``, which a Python
  timeout would end after ``write_timeout`` seconds of client silence.

The counts are kept per handler thread: the handshake's ``process_request``
runs on the thread that accepted the socket, so a thread-local says which
counts that socket holds, and the thread's end gives them back whatever way
the connection ended.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Admission", "REFUSE_READ_SECONDS"]

#: How long a socket refused for a full handshake queue may take to send its request before
#: the 503 goes out (reading it first lets the client see the answer rather than a reset).
REFUSE_READ_SECONDS = 0.5

SocketHandler = Callable[[socket.socket, Any], None]


class Admission:
    """The socket and session counts of one server (see the module docstring)."""

    def __init__(self, max_connections: int, write_timeout: float) -> None:
        self.max_connections = max_connections
        self.write_timeout = write_timeout
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self.waiting = 0  # sockets in the handshake
        self.sessions = 0  # admitted sessions
        self.refused_busy = 0  # sockets answered 503 at once (for tests and logs)
        self.refusing = 0  # refusals waiting for their request

    def wrap(self, handler: SocketHandler) -> SocketHandler:
        """The websockets server's per-socket handler, with the counts around it."""

        def admitted_socket(sock: socket.socket, addr: Any) -> None:
            with self._lock:
                full = self.waiting >= self.max_connections
                patient = full and self.refusing < self.max_connections
                if full:
                    self.refused_busy += 1
                    self.refusing += patient
                else:
                    self.waiting += 1
                    self._sockets.add(sock)
                    self._threads.add(threading.current_thread())
            if full:
                try:
                    _refuse_busy(sock, REFUSE_READ_SECONDS if patient else 0.0)
                finally:
                    with self._lock:
                        self.refusing -= patient
                # websockets (17) counts this thread among those its shutdown() waits for until its own
                # handler ends; given the closed socket, that handler fails its first call and forgets it.
                handler(sock, addr)
                return
            self._local.waiting, self._local.admitted = True, False
            try:
                _set_send_timeout(sock, self.write_timeout)
                handler(sock, addr)
            finally:
                with self._lock:
                    self.waiting -= 1 if self._local.waiting else 0
                    self.sessions -= 1 if self._local.admitted else 0
                    self._sockets.discard(sock)
                    self._threads.discard(threading.current_thread())

        return admitted_socket

    def leave_handshake(self) -> None:
        """The calling thread's socket has sent its request: it no longer counts as waiting."""
        with self._lock:
            if getattr(self._local, "waiting", False):
                self.waiting -= 1
                self._local.waiting = False

    def admit(self) -> bool:
        """Take a session slot for the calling thread's socket; False when all are taken."""
        with self._lock:
            if self.sessions >= self.max_connections:
                return False
            self.sessions += 1
            self._local.admitted = True
            return True

    def held(self) -> tuple[int, list[threading.Thread]]:
        """How many sockets are held, and the threads that hold them."""
        with self._lock:
            return len(self._sockets), list(self._threads)

    def sever_all(self) -> int:
        """Shut down every socket still held: blocked sends and reads return at once. Returns how many."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        return len(sockets)


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a blocking send on ``sock`` fail after ``seconds`` without progress (the socket stays blocking)."""
    if os.name == "nt":  # pragma: no cover - Windows takes milliseconds as a DWORD
        value = struct.pack("I", max(1, int(seconds * 1000)))
    else:
        whole = int(seconds)
        value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _refuse_busy(sock: socket.socket, wait: float) -> None:
    """Answer 503 without a handshake: read what the client sent (waiting ``wait`` s at most), reply, close."""
    body = json.dumps(
        {
            "error_code": "server_busy",
            "title": "Server busy",
            "message": "too many connections are opening at once; retry in a moment",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        sock.settimeout(wait)
        received = b""
        try:
            while b"\r\n\r\n" not in received and len(received) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass  # nothing (more) arrived in time: answer anyway
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()
