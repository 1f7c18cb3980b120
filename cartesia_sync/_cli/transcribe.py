"""``cartesia-sync transcribe``: audio files one after the other, the final text of each on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from .._audio_files import open_audio_file
from .._progress import ProgressLine
from .._result import TranscriptionResult
from .._terminal import terminal_safe
from .._transcribe import transcribe
from ..errors import AuthenticationError, CartesiaSyncError, ConfigurationError, PaymentRequiredError
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, error, note, one_line, print_text
from .endpoint import Endpoint, endpoint
from .outputs import check_subtitle_paths, output_plugins
from .transcribe_many import run_many, wants_many
from .turns import run_turns

__all__ = ["run", "result_entry"]

#: Failures of the endpoint or the settings, not of one file: the other files would fail the same way.
_ENDPOINT_ERRORS = (AuthenticationError, PaymentRequiredError, ConfigurationError)


class _EndpointFailed(Exception):
    """Stops a multi-file run after an error that every further file would meet too (already printed)."""


def run(args: argparse.Namespace) -> int:
    """Each file in turn, or many at a time (see :mod:`.transcribe_many`); a failed one does not stop the rest."""
    if getattr(args, "turns", False):
        return run_turns(args)
    if wants_many(args):
        return run_many(args)
    collision = check_subtitle_paths(args)
    if collision:
        error(collision)
        return EXIT_USAGE
    results: list[dict[str, Any]] = []
    failures = 0
    try:
        with endpoint(args) as reach:
            for done, path in enumerate(args.files):
                try:
                    if not _transcribe_one(args, reach, path, results):
                        failures += 1
                except _EndpointFailed:
                    left = len(args.files) - done - 1
                    if left:
                        note(f"{left} more file(s) not tried: the endpoint refused this run")
                    return EXIT_FAILURE
    finally:  # also on Ctrl-C: every file done so far is in the JSON
        if args.json and results:
            print(json.dumps(results if len(args.files) > 1 else results[0], indent=2), flush=True)
    if failures and len(args.files) > 1:
        note(f"{failures} of {len(args.files)} files failed (see the error lines above)")
    return EXIT_FAILURE if failures else EXIT_OK


def _transcribe_one(args: argparse.Namespace, reach: Endpoint, path: str, results: list[dict[str, Any]]) -> bool:
    """Transcribe one file and print its text (or JSON entry); False when it failed (the error is printed)."""
    progress = ProgressLine(sys.stderr, label=terminal_safe(os.path.basename(path), multiline=False))
    try:
        with open_audio_file(path) as reader:
            progress.total = reader.info.duration
        result = transcribe(
            path,
            realtime=args.realtime,
            local=False,
            **reach,
            mode=args.mode,
            model=args.model,
            language=args.language,
            plugins=[progress, *output_plugins(args, path)],
            load_entrypoints=not args.no_plugins,
        )
    except KeyboardInterrupt as interrupt:
        progress.clear()
        partial = getattr(interrupt, "partial_result", None)
        _print_result(args, path, partial, results, "interrupted")
        if partial is not None and partial.mode == "batch" and not partial.text.strip():
            note(
                f"{terminal_safe(path, multiline=False)}: interrupted before the server's answer, which comes whole "
                "for an upload (--mode stream prints what is recognised as it goes)"
            )
        raise
    except (CartesiaSyncError, OSError) as exc:
        progress.clear()
        if args.debug:
            logging.getLogger("cartesia_sync").exception("%s failed", path)
        _print_result(args, path, getattr(exc, "partial_result", None), results, one_line(exc))
        message = one_line(exc)
        where = "" if len(args.files) == 1 or path in message else f"{path}: "
        error(f"{where}{message}")
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
        entry = result_entry(path, result)
        if error is not None:
            entry["error"] = error
        results.append(entry)
    elif result is not None and result.text.strip():
        print_text(result.text.strip())


def result_entry(path: str, result: TranscriptionResult | None) -> dict[str, Any]:
    """A file's entry in the ``--json`` output: text, words, timings, and the mode and language it ran with."""
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
        "mode": result.mode,
        "language": result.language,
    }
