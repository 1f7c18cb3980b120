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
from collections.abc import Iterator, Sequence
from typing import Any

from . import __version__
from ._audio_files import open_audio_file
from ._client import Client
from ._config import API_KEY_ENV, URL_ENV
from ._embedded import embedded_server
from ._progress import ProgressLine
from ._result import TranscriptionResult
from ._transcribe import transcribe
from .errors import AuthenticationError, CartesiaSyncError, ConfigurationError, PaymentRequiredError

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

    run = commands.add_parser(
        "transcribe",
        help="transcribe audio files; final text on stdout",
        description="Transcribe audio files one after the other; the final text of each on stdout. A file that "
        "fails does not stop the others: its text so far is printed, then one error line on stderr, and the "
        "exit code is 1. With several files, --srt/--vtt name a directory (each FILE's stem + .srt/.vtt) or a "
        "template with {stem}; options may come before or after the files.",
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="WAV, FLAC, OGG, MP3 or AIFF files")
    run.add_argument(
        "--url",
        help=f"endpoint (default ${URL_ENV}, else the hosted API when ${API_KEY_ENV} is set, "
        "else the embedded local server)",
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

    devices = commands.add_parser("devices", help="list audio input devices (exit 1 when there is none)")
    devices.add_argument("--json", action="store_true", help="print them as JSON ([] and exit 1 when there is none)")
    devices.set_defaults(handler=_devices)

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


def _output_plugins(args: argparse.Namespace, path: str | None = None) -> list[Any]:
    """The bundled plugins the output options ask for, each writing its own file.

    :param path: the input file, when subtitle paths are made per input (see :func:`_subtitle_path`).
    """
    plugins: list[Any] = []
    if args.srt or args.vtt:
        from cartesia_sync_plugins.subtitles import SubtitleWriter

        plugins.append(
            SubtitleWriter(
                srt=_subtitle_path(args, args.srt, path, ".srt"), vtt=_subtitle_path(args, args.vtt, path, ".vtt")
            )
        )
    if args.log:
        from cartesia_sync_plugins.event_log import EventLog

        plugins.append(EventLog(args.log))
    return plugins


def _subtitle_path(args: argparse.Namespace, option: str | None, path: str | None, suffix: str) -> str | None:
    """Where one input's subtitles go: the path as given for one input; for several, a directory or a template.

    ``--srt out/`` (or any path, with several inputs) writes ``out/<stem>.srt``;
    ``--srt 'subs/{stem}.en.srt'`` fills in each input's stem.
    """
    if option is None or path is None:
        return option
    target = _subtitle_target(args, option, path, suffix)
    if target != option and "{stem}" not in option:
        os.makedirs(option, exist_ok=True)
    return target


def _subtitle_target(args: argparse.Namespace, option: str, path: str, suffix: str) -> str:
    """The file :func:`_subtitle_path` names for one input, without creating anything."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if "{stem}" in option:
        return option.replace("{stem}", stem)
    if len(args.files) > 1 or option.endswith(os.sep) or os.path.isdir(option):
        return os.path.join(option, stem + suffix)
    return option


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
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    else:
        _show_plugin_warnings()
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


def _show_plugin_warnings() -> None:
    """A broken installed plugin is skipped with a warning: show it as one line, the command goes on."""
    plugin_logger = logging.getLogger("cartesia_sync.plugin_manager")
    if any(getattr(handler, "cartesia_sync_cli", False) for handler in plugin_logger.handlers):
        return  # main() called again in the same process
    handler = logging.StreamHandler()  # sys.stderr at the time of each message
    handler.setFormatter(logging.Formatter("cartesia-sync: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.cartesia_sync_cli = True  # type: ignore[attr-defined]
    plugin_logger.addHandler(handler)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace) -> Iterator[str | None]:
    """The URL to use: the one given, the hosted API (``None``), or an embedded server started here."""
    url = args.url or os.environ.get(URL_ENV)
    if url or os.environ.get(API_KEY_ENV):
        yield url
        return
    with embedded_server(args.engine, load_entrypoints=not args.no_plugins) as url:
        yield url


def _transcribe(args: argparse.Namespace) -> int:
    """Each file in turn; a failed one prints what it had and does not stop the rest."""
    error = _check_subtitle_paths(args)
    if error:
        print(f"cartesia-sync: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    results: list[dict[str, Any]] = []
    failures = 0
    try:
        with _endpoint(args) as url:
            for done, path in enumerate(args.files):
                try:
                    if not _transcribe_one(args, url, path, results):
                        failures += 1
                except _EndpointFailed:
                    left = len(args.files) - done - 1
                    if left:
                        print(
                            f"cartesia-sync: {left} more file(s) not tried: the endpoint refused this run",
                            file=sys.stderr,
                        )
                    return EXIT_FAILURE
    finally:  # also on Ctrl-C: every file done so far is in the JSON
        if args.json and results:
            print(json.dumps(results if len(args.files) > 1 else results[0], indent=2), flush=True)
    if failures and len(args.files) > 1:
        print(
            f"cartesia-sync: {failures} of {len(args.files)} files failed (see the error lines above)", file=sys.stderr
        )
    return EXIT_FAILURE if failures else EXIT_OK


#: Failures of the endpoint or the settings, not of one file: the other files would fail the same way.
_ENDPOINT_ERRORS = (AuthenticationError, PaymentRequiredError, ConfigurationError)


class _EndpointFailed(Exception):
    """Stops a multi-file run after an error that every further file would meet too (already printed)."""


def _check_subtitle_paths(args: argparse.Namespace) -> str | None:
    """A usage error when several inputs would write the same subtitle file."""
    for option, suffix in ((args.srt, ".srt"), (args.vtt, ".vtt")):
        if option is None or len(args.files) < 2:
            continue
        seen: dict[str, str] = {}
        for path in args.files:
            target = _subtitle_target(args, option, path, suffix)
            if target in seen:
                return (
                    f"{seen[target]} and {path} would both write {target}; "
                    "transcribe them in separate runs or rename one"
                )
            seen[target] = path
    return None


def _transcribe_one(args: argparse.Namespace, url: str | None, path: str, results: list[dict[str, Any]]) -> bool:
    """Transcribe one file and print its text (or JSON entry); False when it failed (the error is printed)."""
    progress = ProgressLine(sys.stderr, label=os.path.basename(path))
    try:
        with open_audio_file(path) as reader:
            progress.total = reader.info.duration
        result = transcribe(
            path,
            realtime=args.realtime,
            url=url,
            local=False,
            model=args.model,
            language=args.language,
            plugins=[progress, *_output_plugins(args, path)],
            load_entrypoints=not args.no_plugins,
        )
    except KeyboardInterrupt as interrupt:
        progress.clear()
        _print_result(args, path, getattr(interrupt, "partial_result", None), results, "interrupted")
        raise
    except (CartesiaSyncError, OSError) as exc:
        progress.clear()
        if args.debug:
            logging.getLogger("cartesia_sync").exception("%s failed", path)
        _print_result(args, path, getattr(exc, "partial_result", None), results, _one_line(exc))
        message = _one_line(exc)
        where = "" if len(args.files) == 1 or path in message else f"{path}: "
        print(f"cartesia-sync: error: {where}{message}", file=sys.stderr, flush=True)
        if isinstance(exc, _ENDPOINT_ERRORS):
            raise _EndpointFailed() from exc
        return False
    progress.finish()
    _print_result(args, path, result, results)
    return True


def _print_result(
    args: argparse.Namespace,
    path: str,
    result: TranscriptionResult | None,
    results: list[dict[str, Any]],
    error: str | None = None,
) -> None:
    """Print a file's text (or keep its JSON entry), whole or as far as it got before ``error``."""
    if args.json:
        entry = _result_json(path, result)
        if error is not None:
            entry["error"] = error
        results.append(entry)
    elif result is not None and result.text.strip():
        print(result.text.strip(), flush=True)


def _result_json(path: str, result: TranscriptionResult | None) -> dict[str, Any]:
    if result is None:
        return {"file": path, "text": "", "words": [], "complete": False}
    return {
        "file": path,
        "text": result.text,
        "words": [{"word": w.word, "start": w.start, "end": w.end} for w in result.words],
        "audio_seconds": round(result.audio_seconds, 3),
        "audio_recognised": round(result.stats.audio_acknowledged, 3),
        "wall_seconds": round(result.wall_seconds, 3),
        "request_id": result.request_id,
        "reconnects": result.stats.reconnects,
        "complete": result.complete,
    }


def _listen(args: argparse.Namespace) -> int:
    from cartesia_sync_plugins.live_captions import LiveCaptions
    from cartesia_sync_plugins.microphone import Microphone, find_input_device

    device: Any = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    # Find the device first: without one, fail in one line before starting a server or connecting.
    microphone = Microphone(device=find_input_device(device).index)
    with _endpoint(args) as url:
        # A live source needs no deep send buffer: the microphone's own drop-oldest buffer takes up a
        # stall, and a shallow one keeps captions close to the speech and Ctrl-C quick.
        client = Client(
            url=url,
            model=args.model,
            language=args.language,
            plugins=[LiveCaptions(sys.stderr), *_output_plugins(args)],
            load_entrypoints=not args.no_plugins,
            max_buffer_seconds=0.5,
        )
        session = client.connect(realtime=True)
        try:
            microphone.start(session)
            print(
                f"cartesia-sync: listening on {microphone.device.name} (device {microphone.device.index}, "
                f"{microphone.sample_rate} Hz, {microphone.channels} channel{'s' if microphone.channels > 1 else ''})"
                "; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
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
        speed = microphone.peak_capture_speed or 0.0
        cause = (
            f"the device delivered audio at {speed:.{1 if speed < 10 else 0}f}x real time"
            if microphone.faster_than_realtime
            else "the connection could not keep up"
        )
        print(f"cartesia-sync: {cause}; {microphone.dropped_seconds:.1f} s were dropped", file=sys.stderr)
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    from cartesia_sync_plugins.microphone import NoInputDeviceError, list_input_devices

    devices = list_input_devices()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "index": d.index,
                        "name": d.name,
                        "channels": d.max_input_channels,
                        "default_rate": d.default_sample_rate,
                    }
                    for d in devices
                ],
                indent=2,
            )
        )
    else:
        for d in devices:
            print(f"{d.index:3d}  {d.name}  ({d.max_input_channels} ch, {d.default_sample_rate:g} Hz)")
    if not devices:  # with --json, stdout still holds a valid (empty) list
        raise NoInputDeviceError()
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
        print(
            "cartesia-sync: the log's last line is incomplete (the writer stopped mid-line); it was skipped",
            file=sys.stderr,
        )
    sessions = log.session_summaries()
    if args.session is None and len(sessions) > 1:
        _print_sessions(
            f"{args.log} holds {len(sessions)} sessions; choose one with --session N (its number or its id):", sessions
        )
        return EXIT_USAGE
    if args.session is None:
        chosen = sessions[0]
    else:
        wanted = args.session.strip()
        matches = [s for s in sessions if (str(s.number) == wanted if wanted.isdigit() else s.id == wanted)]
        if not matches:
            _print_sessions(
                f"{args.log} has no session {wanted!r}; choose one of its {len(sessions)} "
                f"session{'s' if len(sessions) > 1 else ''} with --session N (its number or its id):",
                sessions,
            )
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
    from ._config import is_loopback_host
    from .local import LocalServer

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


def _plugins(args: argparse.Namespace) -> int:
    client = Client(url="ws://127.0.0.1:1/stt/websocket", api_key=None)
    print(json.dumps(client.plugins(), indent=2))
    return EXIT_OK
