"""The ``cartesia-sync`` command line: argument parsing and dispatch.

Each sub-command lives in its own private module (``cartesia_sync._cli``);
this module builds the parser, picks the command's ``run`` function, and turns
what escapes it into an exit code and one line on stderr.

Exit codes: 0 success, 1 failure (one line on stderr; ``--debug`` adds the
traceback), 2 usage error, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from . import __version__
from ._cli.common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SafeFormatter,
    error,
    note,
    one_line,
    safe_last_resort,
    show_plugin_warnings,
    tolerant_output,
)
from ._cli.devices import run as run_devices
from ._cli.listen import run as run_listen
from ._cli.plugins import run as run_plugins
from ._cli.replay import run as run_replay
from ._cli.serve import SERVER_KEY_ENV
from ._cli.serve import run as run_serve
from ._cli.transcribe import run as run_transcribe
from ._config import API_KEY_ENV, URL_ENV
from ._endpoints import BASE_URL_ENV
from .errors import CartesiaSyncError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cartesia-sync",
        description="Streaming speech-to-text with Cartesia, from plain scripts and threaded programs. "
        "With no API key and no URL, audio is transcribed by an embedded local server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="log to stderr at DEBUG and show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "transcribe",
        help="transcribe audio files; final text on stdout",
        description="Transcribe audio files one after the other; the final text of each on stdout. A file that "
        "fails does not stop the others: its text so far is printed, then one error line on stderr, and the "
        "exit code is 1. With several files, --srt/--vtt name a directory (each FILE's stem + .srt/.vtt) or a "
        "template with {stem}; options may come before or after the files.",
    )
    run.add_argument(
        "files",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="WAV, FLAC, OGG, MP3 or AIFF files, folders (their audio files, recursively) or globs",
    )
    run.add_argument(
        "--url",
        help=f"endpoint (default ${URL_ENV}, else the hosted API when ${API_KEY_ENV} is set, "
        "else the embedded local server)",
    )
    run.add_argument(
        "--base-url",
        help=f"base URL every route is derived from (default ${BASE_URL_ENV}, else the hosted API when "
        f"${API_KEY_ENV} is set, else the embedded local server); --url overrides the streaming route",
    )
    run.add_argument("--model", default="ink-whisper", help="model id (default: %(default)s)")
    run.add_argument("--language", default="en", help="ISO-639-1 language (default: %(default)s)")
    run.add_argument("--engine", default="pocketsphinx", help="engine of the embedded server (default: %(default)s)")
    pace = run.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        dest="realtime",
        action="store_const",
        const=True,
        default=None,
        help="pace audio at 1x (default for remote servers)",
    )
    pace.add_argument(
        "--fast",
        dest="realtime",
        action="store_const",
        const=False,
        help="send audio as fast as the server takes it (default on loopback)",
    )
    run.add_argument("--json", action="store_true", help="print text, words and timings as JSON")
    run.add_argument(
        "--turns",
        action="store_true",
        help="use the turn-detecting endpoint (ink-2): one line per turn; with --json, the turns and their times",
    )
    run.add_argument(
        "--mode",
        choices=("auto", "batch", "stream"),
        default="auto",
        help="upload each file whole (batch), stream it, or choose by model and server (default: %(default)s)",
    )
    many = run.add_argument_group(
        "many files",
        "With --out-dir, --jobs or --dask, or a folder or glob among the inputs, files run several at a time "
        "(429s wait and slow the run down, failures are retried) with one overall progress bar.",
    )
    many.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="transcriptions at once (default: the number of cores with the embedded server, else 4)",
    )
    many.add_argument(
        "--out-dir",
        metavar="DIR",
        help="write each file's outputs here, mirroring the input tree, and resume from DIR/manifest.jsonl",
    )
    many.add_argument(
        "--format", default="txt", metavar="LIST", help="outputs in --out-dir: some of txt,json,srt,vtt (default: txt)"
    )
    many.add_argument("--no-resume", action="store_true", help="redo every file, even those the manifest lists")
    many.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="spread the files over a Dask cluster (pip install 'cartesia-sync[dask]'); workers read "
        f"${API_KEY_ENV} from their own environment",
    )
    _output_options(run)
    run.add_argument("--no-plugins", action="store_true", help="do not load installed plugins")
    run.set_defaults(handler=run_transcribe)

    listen = commands.add_parser("listen", help="live captions from a microphone until Ctrl-C")
    listen.add_argument("--device", help="input device: index or part of its name (see `devices`)")
    listen.add_argument("--url", help="endpoint, as for transcribe")
    listen.add_argument("--base-url", help="base URL, as for transcribe")
    listen.add_argument("--model", help="model id (default: ink-whisper, or ink-2 with --turns)")
    listen.add_argument(
        "--turns",
        action="store_true",
        help="use the turn-detecting endpoint: print each turn as it ends (the open turn live on a terminal)",
    )
    listen.add_argument("--language", default="en", help="ISO-639-1 language (default: %(default)s)")
    listen.add_argument("--engine", default="pocketsphinx", help="engine of the embedded server (default: %(default)s)")
    _output_options(listen)
    listen.add_argument("--no-plugins", action="store_true", help="do not load installed plugins")
    listen.set_defaults(handler=run_listen)

    devices = commands.add_parser("devices", help="list audio input devices (exit 1 when there is none)")
    devices.add_argument("--json", action="store_true", help="print them as JSON ([] and exit 1 when there is none)")
    devices.set_defaults(handler=run_devices)

    replay = commands.add_parser("replay", help="rebuild the transcript and subtitles from an event log")
    replay.add_argument("log", metavar="LOG", help="a JSON Lines file written with --log")
    replay.add_argument(
        "--session",
        metavar="N",
        help="which session of the log: its number (1, 2, 3... in file order) or its id; needed "
        "when the log holds several (without it, replay lists them)",
    )
    replay.add_argument("--srt", metavar="PATH", help="write SRT subtitles")
    replay.add_argument("--vtt", metavar="PATH", help="write WebVTT subtitles")
    replay.set_defaults(handler=run_replay)

    serve = commands.add_parser("serve", help="run the local Cartesia-compatible server until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8765, help="port (default: %(default)s; 0 picks a free one)")
    serve.add_argument(
        "--api-key",
        help=f"require this key (default ${SERVER_KEY_ENV}; with neither, no key is needed on loopback, "
        "and a reachable address needs --no-key)",
    )
    serve.add_argument("--engine", default="pocketsphinx", help="speech engine (default: %(default)s)")
    serve.add_argument("--idle-timeout", type=float, default=20.0, help="close idle connections after this many s")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (other machines may connect: give --api-key, or --no-key)",
    )
    serve.add_argument(
        "--no-key",
        action="store_true",
        help="with --allow-remote, serve without a key: anyone who can reach the port may use it "
        "(without this, a reachable server must require a key)",
    )
    serve.set_defaults(handler=run_serve)

    listing = commands.add_parser("plugins", help="list installed plugins, their versions and hooks, as JSON")
    listing.set_defaults(handler=run_plugins)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _output_options(parser: argparse.ArgumentParser) -> None:
    """The options that add output files (subtitles, an event log) to ``transcribe`` and ``listen``."""
    parser.add_argument("--srt", metavar="PATH", help="write SRT subtitles, cue by cue")
    parser.add_argument("--vtt", metavar="PATH", help="write WebVTT subtitles, cue by cue")
    parser.add_argument("--log", metavar="PATH", help="append every event as JSON Lines")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``transcribe`` take files after its options (``a.wav --srt x b.wav``)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) == "transcribe" and not any(item.startswith("-") for item in extra):
            args.files.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    with tolerant_output(), safe_last_resort():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    if args.debug:
        handler = logging.StreamHandler()
        handler.setFormatter(SafeFormatter("%(asctime)s %(threadName)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    else:
        show_plugin_warnings()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        note("interrupted")
        return EXIT_INTERRUPTED
    except (CartesiaSyncError, OSError) as exc:
        if args.debug:
            logging.getLogger("cartesia_sync").exception("failed")
        error(one_line(exc))
        return EXIT_FAILURE
