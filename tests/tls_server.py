"""A minimal TLS WebSocket server on 127.0.0.1 with a throwaway CA from ``trustme``.

It speaks just enough of the protocol for a session to open and close: it
ignores audio and ``finalize``, and answers the end command (``done`` or
``close``) with ``{"type": "done"}`` and a clean close. The CA's certificate is
written to a PEM file for ``Client(ca_certs=...)``.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from pathlib import Path
from typing import Any

import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class TLSServer:
    """Serves ``wss://`` on 127.0.0.1 with a certificate for ``hostnames``, signed by a fresh CA.

    :param directory: where to write the CA certificate (``ca_path``).
    :param hostnames: the names the server certificate is valid for.
    """

    def __init__(self, directory: Path, hostnames: tuple = ("localhost",)) -> None:
        self.ca = trustme.CA()
        self.ca_path = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*hostnames).configure_cert(context)
        self.paths: list[str] = []
        self.handled = threading.Event()
        # A client that rejects the certificate makes the server log a failed
        # TLS handshake; that is expected here, so keep it out of the output.
        self._logger = logging.getLogger("tls-test-server")
        self._logger.propagate = False
        self._logger.addHandler(logging.NullHandler())
        self._server = serve(self._handle, "127.0.0.1", 0, ssl=context, compression=None, logger=self._logger)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="tls-test-server", daemon=True)

    def url(self, host: str = "localhost") -> str:
        return f"wss://{host}:{self.port}/stt/websocket"

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def _handle(self, conn: ServerConnection) -> None:
        self.paths.append(conn.request.path if conn.request else "")
        try:
            for message in conn:
                if message in ("done", "close"):
                    conn.send(json.dumps({"type": "done", "request_id": "tls-1"}))
                    conn.close(1000, "done")
                    return
        except ConnectionClosed:
            pass
        finally:
            self.handled.set()
