"""The ``cartesia-sync`` command line: argument parsing and output only.

Exit codes: 0 success, 1 failure (one line on stderr; ``--debug`` adds the
traceback), 2 usage error, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, Iterator, List, Optional, Sequence

from . import __version__
from .client import API_KEY_ENV, URL_ENV, Client
from .errors import CartesiaSyncError
from .progress import ProgressLine

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SERVER_KEY_ENV = "CARTESIA_SYNC_SERVER_KEY"


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

    run = commands.add_parser("transcribe", help="transcribe audio files; final text on stdout")
    run.add_argument("files", nargs="+", metavar="FILE", help="WAV, FLAC, OGG, MP3 or AIFF files")
    run.add_argument("--url", help=f"endpoint (default ${URL_ENV}, else the hosted API when ${API_KEY_ENV} is set, "
                                   "else the embedded local server)")
    run.add_argument("--model", default="ink-whisper", help="model id (default: %(default)s)")
    run.add_argument("--language", default="en", help="ISO-639-1 language (default: %(default)s)")
    run.add_argument("--engine", default="pocketsphinx", help="engine of the embedded server (default: %(default)s)")
    pace = run.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_const", const=True, default=None,
                      help="pace audio at 1x (default for remote servers)")
    pace.add_argument("--fast", dest="realtime", action="store_const", const=False,
                      help="send audio as fast as the server takes it (default on loopback)")
    run.add_argument("--json", action="store_true", help="print text, words and timings as JSON")
    _output_options(run)
    run.add_argument("--no-plugins", action="store_true", help="do not load installed plugins")
    run.set_defaults(handler=_transcribe)

    listen = commands.add_parser("listen", help="live captions from a microphone until Ctrl-C")
    listen.add_argument("--device", help="input device: index or part of its name (see `devices`)")
    listen.add_argument("--url", help="endpoint, as for transcribe")
    listen.add_argument("--model", default="ink-whisper", help="model id (default: %(default)s)")
    listen.add_argument("--language", default="en", help="ISO-639-1 language (default: %(default)s)")
    listen.add_argument("--engine", default="pocketsphinx", help="engine of the embedded server (default: %(default)s)")
    _output_options(listen)
    listen.add_argument("--no-plugins", action="store_true", help="do not load installed plugins")
    listen.set_defaults(handler=_listen)

    devices = commands.add_parser("devices", help="list audio input devices")
    devices.add_argument("--json", action="store_true", help="print them as JSON")
    devices.set_defaults(handler=_devices)

    replay = commands.add_parser("replay", help="rebuild the transcript and subtitles from an event log")
    replay.add_argument("log", metavar="LOG", help="a JSON Lines file written with --log")
    replay.add_argument("--session", metavar="N",
                        help="which session of the log: its number (1, 2, 3... in file order) or its id; needed "
                             "when the log holds several (without it, replay lists them)")
    replay.add_argument("--srt", metavar="PATH", help="write SRT subtitles")
    replay.add_argument("--vtt", metavar="PATH", help="write WebVTT subtitles")
    replay.set_defaults(handler=_replay)

    serve = commands.add_parser("serve", help="run the local Cartesia-compatible server until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8765, help="port (default: %(default)s; 0 picks a free one)")
    serve.add_argument("--api-key", help=f"require this key (default ${SERVER_KEY_ENV}; none: no key needed)")
    serve.add_argument("--engine", default="pocketsphinx", help="speech engine (default: %(default)s)")
    serve.add_argument("--idle-timeout", type=float, default=20.0, help="close idle connections after this many s")
    serve.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    serve.set_defaults(handler=_serve)

    listing = commands.add_parser("plugins", help="list installed plugins, their versions and hooks, as JSON")
    listing.set_defaults(handler=_plugins)
    return parser


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--srt", metavar="PATH", help="write SRT subtitles, cue by cue")
    parser.add_argument("--vtt", metavar="PATH", help="write WebVTT subtitles, cue by cue")
    parser.add_argument("--log", metavar="PATH", help="append every event as JSON Lines")


def _output_plugins(args: argparse.Namespace) -> List[Any]:
    """The bundled plugins the output options ask for, each writing its own file."""
    plugins: List[Any] = []
    if args.srt or args.vtt:
        from cartesia_sync_plugins.subtitles import SubtitleWriter

        plugins.append(SubtitleWriter(srt=args.srt, vtt=args.vtt))
    if args.log:
        from cartesia_sync_plugins.event_log import EventLog

        plugins.append(EventLog(args.log))
    return plugins


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


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace) -> Iterator[Optional[str]]:
    """The URL to use: the one given, the hosted API (``None``), or an embedded server started here."""
    url = args.url or os.environ.get(URL_ENV)
    if url or os.environ.get(API_KEY_ENV):
        yield url
        return
    from .local import LocalServer

    with LocalServer(args.engine, load_entrypoints=not args.no_plugins) as server:
        print(f"cartesia-sync: no {API_KEY_ENV} set: using the embedded local server ({args.engine}) at {server.url}",
              file=sys.stderr, flush=True)
        yield server.url


def _transcribe(args: argparse.Namespace) -> int:
    if (args.srt or args.vtt) and len(args.files) > 1:
        print("cartesia-sync: error: --srt and --vtt take one FILE at a time", file=sys.stderr)
        return EXIT_USAGE
    results: List[dict] = []
    with _endpoint(args) as url:
        for path in args.files:
            progress = ProgressLine(sys.stderr, label=os.path.basename(path))
            client = Client(url=url, model=args.model, language=args.language,
                            plugins=[progress, *_output_plugins(args)], load_entrypoints=not args.no_plugins)
            with client.connect(realtime=args.realtime) as session:
                progress.total = session.send_file(path).duration
            progress.finish()
            if args.json:
                results.append(_result_json(path, session))
            else:
                print(session.text.strip(), flush=True)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return EXIT_OK


def _result_json(path: str, session: Any) -> dict:
    stats = session.stats
    return {
        "file": path,
        "text": session.text,
        "words": [{"word": w.word, "start": w.start, "end": w.end} for w in session.words],
        "audio_seconds": round(stats.audio_sent, 3),
        "wall_seconds": round(stats.wall_seconds + stats.connect_seconds, 3),
        "request_id": session.request_id,
    }


def _listen(args: argparse.Namespace) -> int:
    from cartesia_sync_plugins.live_captions import LiveCaptions
    from cartesia_sync_plugins.microphone import Microphone

    device: Any = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    microphone = Microphone(device=device)
    with _endpoint(args) as url:
        # A live source needs no deep send buffer: the microphone's own drop-oldest buffer takes up a
        # stall, and a shallow one keeps captions close to the speech and Ctrl-C quick.
        client = Client(url=url, model=args.model, language=args.language,
                        plugins=[LiveCaptions(sys.stderr), *_output_plugins(args)],
                        load_entrypoints=not args.no_plugins, max_buffer_seconds=0.5)
        session = client.connect(realtime=True)
        try:
            microphone.start(session)
            print(f"cartesia-sync: listening on {microphone.device.name}; Ctrl-C stops", file=sys.stderr, flush=True)
            while microphone.running:
                time.sleep(0.2)
            if microphone.error is not None:
                raise microphone.error
        except KeyboardInterrupt:
            pass  # the normal way to stop: flush what was said, then close cleanly
        except BaseException:
            microphone.stop()
            session.abort()
            raise
        try:
            microphone.stop()
            session.close()
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            session.abort()
            raise
    print(session.text.strip(), flush=True)
    if microphone.dropped_seconds:
        print(f"cartesia-sync: {microphone.dropped_seconds:.1f} s of audio were dropped (the network was too slow)",
              file=sys.stderr)
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    from cartesia_sync_plugins.microphone import list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps([{"index": d.index, "name": d.name, "channels": d.max_input_channels, "default_rate": d.default_sample_rate}
                          for d in devices], indent=2))
    else:
        for d in devices:
            print(f"{d.index:3d}  {d.name}  ({d.max_input_channels} ch, {d.default_sample_rate:g} Hz)")
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from cartesia_sync_plugins.event_log import EventLogCorruptError, read_event_log, transcript_from_events
    from cartesia_sync_plugins.subtitles import write_subtitles

    try:
        log = read_event_log(args.log)
    except ValueError as exc:  # not an event log, or a corrupt line in the middle of one
        fix = "; delete or repair that line to replay the rest" if isinstance(exc, EventLogCorruptError) else ""
        print(f"cartesia-sync: error: {_one_line(exc)}{fix}", file=sys.stderr)
        return EXIT_FAILURE
    if log.torn_tail:
        print("cartesia-sync: the log's last line is incomplete (the writer stopped mid-line); it was skipped",
              file=sys.stderr)
    sessions = log.session_summaries()
    if args.session is None and len(sessions) > 1:
        _print_sessions(f"{args.log} holds {len(sessions)} sessions; choose one with --session N "
                        "(its number or its id):", sessions)
        return EXIT_USAGE
    if args.session is None:
        chosen = sessions[0]
    else:
        wanted = args.session.strip()
        matches = [s for s in sessions if (str(s.number) == wanted if wanted.isdigit() else s.id == wanted)]
        if not matches:
            _print_sessions(f"{args.log} has no session {wanted!r}; choose one of its {len(sessions)} "
                            f"session{'s' if len(sessions) > 1 else ''} with --session N (its number or its id):",
                            sessions)
            return EXIT_USAGE
        chosen = matches[0]
    text, words = transcript_from_events(log.events, session=chosen.id)
    if args.srt or args.vtt:
        write_subtitles(words, srt=args.srt, vtt=args.vtt)
    print(text.strip(), flush=True)
    return EXIT_OK


def _print_sessions(headline: str, sessions: Sequence[Any]) -> None:
    """An error line, then one line per session: number, id, start, audio duration, ending and first words."""
    print(f"cartesia-sync: error: {headline}", file=sys.stderr)
    for s in sessions:
        audio = "? s" if s.audio is None else f"{s.audio:.1f} s"
        ended = "" if s.ended else " (no session_end)"
        words = json.dumps(s.preview(), ensure_ascii=False)
        print(f"  {s.number:>3}  {s.id}  {s.started or '?'}  {audio} of audio{ended}  {words}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    from .config import is_loopback_host
    from .local import LocalServer

    if not is_loopback_host(args.host) and not args.allow_remote:
        print(f"cartesia-sync: error: refusing to bind {args.host!r}: the server listens on loopback only unless "
              "you pass --allow-remote (then anyone who can reach it may use it; consider --api-key too)",
              file=sys.stderr)
        return EXIT_FAILURE
    if not args.idle_timeout > 0:
        print(f"cartesia-sync: error: --idle-timeout must be a positive number of seconds, got {args.idle_timeout:g}",
              file=sys.stderr)
        return EXIT_USAGE
    key = args.api_key or os.environ.get(SERVER_KEY_ENV) or None
    server = LocalServer(args.engine, host=args.host, port=args.port, api_key=key, idle_timeout=args.idle_timeout,
                         allow_remote=args.allow_remote)
    server.start()
    print(f"cartesia-sync: serving {server.url} (engine {args.engine}, "
          f"{'key required' if key else 'no key needed'}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("cartesia-sync: stopped", file=sys.stderr)
    return EXIT_OK


def _plugins(args: argparse.Namespace) -> int:
    client = Client(url="ws://127.0.0.1:1/stt/websocket", api_key=None)
    print(json.dumps(client.plugins(), indent=2))
    return EXIT_OK
