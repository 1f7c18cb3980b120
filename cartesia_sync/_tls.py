"""TLS for a direct ``wss://`` connection, with the handshake held to a deadline.

With a socket timeout, Python's TLS handshake waits up to that long for each
piece of the server's answer, so a server sending its certificate a byte a
second would hold ``connect()`` for hours. Here the handshake runs on a
non-blocking socket and waits, in total, only until the deadline. The trust
settings are those websocket-client used: certificates and host names always
verified, against ``ca_certs`` if given, else the bundle named by
``WEBSOCKET_CLIENT_CA_BUNDLE`` (a file or a directory), else the system's.
"""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import time

__all__ = ["TlsExpired", "handshake", "wrap"]


class TlsExpired(Exception):
    """The deadline passed before the TLS handshake completed."""


def context(ca_certs: str | None) -> ssl.SSLContext:
    """A client context that verifies certificates and host names."""
    if ca_certs:
        return ssl.create_default_context(cafile=ca_certs)
    bundle = os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE")
    if bundle and os.path.isfile(bundle):
        return ssl.create_default_context(cafile=bundle)
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context()


def wrap(raw: socket.socket, host: str, ca_certs: str | None) -> ssl.SSLSocket:
    """``raw`` as a non-blocking TLS socket for ``host``, its handshake not started (see :func:`handshake`)."""
    raw.setblocking(False)
    return context(ca_certs).wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)


def handshake(tls: ssl.SSLSocket, deadline: float) -> None:
    """Complete the TLS handshake before ``deadline`` (a ``time.monotonic()`` value).

    Leaves the socket blocking, with a timeout of what is left of the deadline.

    :raises TlsExpired: the deadline passed first.
    :raises ssl.SSLError: the handshake failed (``ssl.SSLCertVerificationError``: the certificate).
    :raises OSError: the connection failed.
    """
    with selectors.DefaultSelector() as selector:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                events = selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                events = selectors.EVENT_WRITE
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TlsExpired()
            selector.register(tls, events)
            ready = selector.select(remaining)
            selector.unregister(tls)
            if not ready:
                raise TlsExpired()
    tls.settimeout(max(0.001, deadline - time.monotonic()))
