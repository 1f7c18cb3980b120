"""The ``cartesia-sync`` command line: argument parsing and output only, no business logic.

Exit codes: 0 success, 1 failure (one line on stderr; ``--debug`` adds the
traceback), 2 usage error, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional, Sequence

from . import __version__
from .client import API_KEY_ENV, URL_ENV, Client
from .errors import CartesiaSyncError
from .transcribe import transcribe

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cartesia-sync",
        description="Streaming speech-to-text with Cartesia, from plain scripts and threaded programs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="log to stderr at DEBUG and show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser("transcribe", help="transcribe audio files; final text on stdout")
    run.add_argument("files", nargs="+", metavar="FILE", help="WAV, FLAC, OGG, MP3 or AIFF files")
    run.add_argument("--url", help=f"endpoint (default ${URL_ENV} or the hosted API); the key comes from ${API_KEY_ENV}")
    run.add_argument("--model", default="ink-whisper", help="model id (default: %(default)s)")
    run.add_argument("--language", default="en", help="ISO-639-1 language (default: %(default)s)")
    pace = run.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_const", const=True, default=None,
                      help="pace audio at 1x (default for remote servers)")
    pace.add_argument("--fast", dest="realtime", action="store_const", const=False,
                      help="send audio as fast as the server takes it (default on loopback)")
    run.add_argument("--json", action="store_true", help="print text, words and timings as JSON")
    run.add_argument("--no-plugins", action="store_true", help="do not load installed plugins")
    run.set_defaults(handler=_transcribe)

    listing = commands.add_parser("plugins", help="list installed plugins, their versions and hooks, as JSON")
    listing.set_defaults(handler=_plugins)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("cartesia-sync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CartesiaSyncError, OSError) as exc:
        if args.debug:
            logging.getLogger("cartesia_sync").exception("failed")
        print(f"cartesia-sync: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())


def _transcribe(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get(URL_ENV)
    if not url and not os.environ.get(API_KEY_ENV):
        print(
            f"cartesia-sync: error: no API key: set {API_KEY_ENV} for the hosted API, or pass --url to a local server",
            file=sys.stderr,
        )
        return EXIT_USAGE
    results: List[dict] = []
    for path in args.files:
        result = transcribe(
            path, realtime=args.realtime, url=url, model=args.model, language=args.language,
            load_entrypoints=not args.no_plugins,
        )
        if args.json:
            results.append({
                "file": path,
                "text": result.text,
                "words": [{"word": w.word, "start": w.start, "end": w.end} for w in result.words],
                "audio_seconds": round(result.audio_seconds, 3),
                "wall_seconds": round(result.wall_seconds, 3),
                "request_id": result.request_id,
            })
        else:
            print(result.text.strip(), flush=True)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return EXIT_OK


def _plugins(args: argparse.Namespace) -> int:
    client = Client(url="ws://127.0.0.1:1/stt/websocket", api_key=None)
    print(json.dumps(client.plugins(), indent=2))
    return EXIT_OK
