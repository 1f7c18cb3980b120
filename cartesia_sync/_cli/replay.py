"""``cartesia-sync replay``: rebuild a session's transcript and subtitles from an event log."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .._terminal import terminal_safe
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, error, note, one_line, print_text

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Print the chosen session's text (and write its subtitles); list the sessions when the choice is unclear."""
    from cartesia_sync_plugins.event_log import EventLogCorruptError, read_event_log, transcript_from_events
    from cartesia_sync_plugins.subtitles import write_subtitles

    try:
        log = read_event_log(args.log)
    except ValueError as exc:  # not an event log, or a corrupt line in the middle of one
        fix = "; delete or repair that line to replay the rest" if isinstance(exc, EventLogCorruptError) else ""
        error(f"{one_line(exc)}{fix}")
        return EXIT_FAILURE
    if log.torn_tail:
        note("the log's last line is incomplete (the writer stopped mid-line); it was skipped")
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
    print_text(text.strip())
    return EXIT_OK


def _print_sessions(headline: str, sessions: Sequence[Any]) -> None:
    """An error line, then one line per session: number, id, start, audio duration, ending and first words."""
    error(headline)
    for s in sessions:
        audio = "? s" if s.audio is None else f"{s.audio:.1f} s"
        ended = "" if s.ended else " (no session_end)"
        words = json.dumps(terminal_safe(s.preview(), multiline=False), ensure_ascii=False)
        line = f"  {s.number:>3}  {s.id}  {s.started or '?'}  {audio} of audio{ended}  {words}"
        print(terminal_safe(line, multiline=False), file=sys.stderr)
