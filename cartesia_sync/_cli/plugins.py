"""``cartesia-sync plugins``: the installed plugins, their versions and hooks, as JSON."""

from __future__ import annotations

import argparse
import json

from .._client import Client
from .common import EXIT_OK

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Print what a default client would load (no connection is made)."""
    client = Client(url="ws://127.0.0.1:1/stt/websocket", api_key=None)
    print(json.dumps(client.plugins(), indent=2))
    return EXIT_OK
