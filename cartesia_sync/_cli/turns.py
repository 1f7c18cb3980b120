"""``cartesia-sync transcribe FILE... --turns``: the turns endpoint on files, one line per turn."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .._client import Client
from .._terminal import terminal_safe
from ..errors import CartesiaSyncError
from .common import EXIT_FAILURE, EXIT_OK, error, one_line, print_text
from .endpoint import Endpoint, endpoint
from .outputs import output_plugins

__all__ = ["run_turns"]


def run_turns(args: argparse.Namespace) -> int:
    """Each file through a turn session: its turns printed one per line as they end, or as JSON with their times."""
    entries: list[dict[str, Any]] = []
    failures = 0
    try:
        with endpoint(args) as reach:
            for path in args.files:
                if not _one_file(args, reach, path, entries):
                    failures += 1
    finally:  # also on Ctrl-C: every file done so far is in the JSON
        if args.json and entries:
            print(json.dumps(entries if len(args.files) > 1 else entries[0], indent=2), flush=True)
    return EXIT_FAILURE if failures else EXIT_OK


def _one_file(args: argparse.Namespace, reach: Endpoint, path: str, entries: list[dict[str, Any]]) -> bool:
    model = args.model if args.model not in (None, "ink-whisper") else "ink-2"
    client = Client(model=model, plugins=output_plugins(args, path), load_entrypoints=not args.no_plugins, **reach)
    session: Any = None
    problem: BaseException | None = None
    try:
        session = client.connect_turns(realtime=args.realtime, model=model)
        with session:
            session.send_file(path)
    except (CartesiaSyncError, OSError) as exc:
        problem = exc
    turns = list(session.turns) if session is not None else []
    if args.json:
        entry: dict[str, Any] = {
            "file": path,
            "text": session.text if session is not None else "",
            "turns": [{"text": t.text, "start": t.start, "end": t.end, "eager": t.eager} for t in turns],
            "request_id": session.request_id if session is not None else None,
        }
        if problem is not None:
            entry["error"] = one_line(problem)
        entries.append(entry)
    else:
        for turn in turns:
            print_text(terminal_safe(turn.text.strip(), multiline=False))
    if problem is not None:
        where = "" if len(args.files) == 1 else f"{os.path.basename(path)}: "
        error(f"{where}{one_line(problem)}")
        return False
    return True
