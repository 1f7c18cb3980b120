"""``cartesia-sync serve``: the local Cartesia-compatible server, in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

__all__ = ["run", "SERVER_KEY_ENV"]

#: Where ``serve`` takes the key it requires when ``--api-key`` is not given.
SERVER_KEY_ENV = "CARTESIA_SYNC_SERVER_KEY"


def run(args: argparse.Namespace) -> int:
    """Check the bind address and options, then serve until Ctrl-C."""
    from .._config import is_loopback_host
    from ..local import LocalServer

    if not is_loopback_host(args.host) and not args.allow_remote:
        print(
            f"cartesia-sync: error: refusing to bind {args.host!r}: the server listens on loopback only unless "
            "you pass --allow-remote (then anyone who can reach it may use it; consider --api-key too)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if not args.idle_timeout > 0:
        print(
            f"cartesia-sync: error: --idle-timeout must be a positive number of seconds, got {args.idle_timeout:g}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    key = args.api_key or os.environ.get(SERVER_KEY_ENV) or None
    server = LocalServer(
        args.engine,
        host=args.host,
        port=args.port,
        api_key=key,
        idle_timeout=args.idle_timeout,
        allow_remote=args.allow_remote,
    )
    server.start()
    print(
        f"cartesia-sync: serving {server.url} (engine {args.engine}, "
        f"{'key required' if key else 'no key needed'}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("cartesia-sync: stopped", file=sys.stderr)
    return EXIT_OK
