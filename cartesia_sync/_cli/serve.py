"""``cartesia-sync serve``: the local Cartesia-compatible server, in the foreground until Ctrl-C.

It binds loopback unless ``--allow-remote``; a server other machines can reach
must require a key (``--api-key`` or ``$CARTESIA_SYNC_SERVER_KEY``) unless
``--no-key`` says that an open one is wanted.
"""

from __future__ import annotations

import argparse
import os

from .._terminal import terminal_safe
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, error, note

__all__ = ["run", "SERVER_KEY_ENV"]

#: Where ``serve`` takes the key it requires when ``--api-key`` is not given.
SERVER_KEY_ENV = "CARTESIA_SYNC_SERVER_KEY"


def run(args: argparse.Namespace) -> int:
    """Check the bind address, the key and the options, then serve until Ctrl-C."""
    from .._config import is_loopback_host
    from ..local import LocalServer

    host = terminal_safe(repr(args.host), multiline=False)
    loopback = is_loopback_host(args.host)
    if not loopback and not args.allow_remote:
        error(
            f"refusing to bind {host}: the server listens on loopback only unless "
            "you pass --allow-remote (then anyone who can reach it may use it; consider --api-key too)"
        )
        return EXIT_FAILURE
    key = args.api_key or os.environ.get(SERVER_KEY_ENV) or None
    if args.no_key and key:
        where = "--api-key" if args.api_key else f"${SERVER_KEY_ENV}"
        error(f"--no-key and {where} contradict each other: give a key, or --no-key for an open server, not both")
        return EXIT_USAGE
    if not loopback and not key and not args.no_key:
        error(
            f"refusing to serve {host} to other machines without a key: anyone who can reach the port could "
            f"use it. Require one with --api-key KEY (or ${SERVER_KEY_ENV}), or pass --no-key if an open "
            "server is really what you want"
        )
        return EXIT_FAILURE
    if not args.idle_timeout > 0:
        error(f"--idle-timeout must be a positive number of seconds, got {args.idle_timeout:g}")
        return EXIT_USAGE
    server = LocalServer(
        args.engine,
        host=args.host,
        port=args.port,
        api_key=key,
        idle_timeout=args.idle_timeout,
        allow_remote=args.allow_remote,
    )
    server.start()
    note(f"serving {server.url} (engine {args.engine}, {'key required' if key else 'no key needed'}); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        note("stopped")
    return EXIT_OK
