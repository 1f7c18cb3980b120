"""The output files a command can write besides its text: subtitles and an event log, by bundled plugins."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["output_plugins", "check_subtitle_paths"]


def output_plugins(args: argparse.Namespace, path: str | None = None) -> list[Any]:
    """The bundled plugins the output options ask for, each writing its own file.

    :param path: the input file, when subtitle paths are made per input (see :func:`subtitle_path`).
    """
    plugins: list[Any] = []
    if args.srt or args.vtt:
        from cartesia_sync_plugins.subtitles import SubtitleWriter

        plugins.append(
            SubtitleWriter(
                srt=subtitle_path(args, args.srt, path, ".srt"), vtt=subtitle_path(args, args.vtt, path, ".vtt")
            )
        )
    if args.log:
        from cartesia_sync_plugins.event_log import EventLog

        plugins.append(EventLog(args.log))
    return plugins


def subtitle_path(args: argparse.Namespace, option: str | None, path: str | None, suffix: str) -> str | None:
    """Where one input's subtitles go: the path as given for one input; for several, a directory or a template.

    ``--srt out/`` (or any path, with several inputs) writes ``out/<stem>.srt``;
    ``--srt 'subs/{stem}.en.srt'`` fills in each input's stem.
    """
    if option is None or path is None:
        return option
    target = subtitle_target(args, option, path, suffix)
    if target != option and "{stem}" not in option:
        os.makedirs(option, exist_ok=True)
    return target


def subtitle_target(args: argparse.Namespace, option: str, path: str, suffix: str) -> str:
    """The file :func:`subtitle_path` names for one input, without creating anything."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if "{stem}" in option:
        return option.replace("{stem}", stem)
    if len(args.files) > 1 or option.endswith(os.sep) or os.path.isdir(option):
        return os.path.join(option, stem + suffix)
    return option


def check_subtitle_paths(args: argparse.Namespace) -> str | None:
    """A usage error when several inputs would write the same subtitle file."""
    for option, suffix in ((args.srt, ".srt"), (args.vtt, ".vtt")):
        if option is None or len(args.files) < 2:
            continue
        seen: dict[str, str] = {}
        for path in args.files:
            target = subtitle_target(args, option, path, suffix)
            if target in seen:
                return (
                    f"{seen[target]} and {path} would both write {target}; "
                    "transcribe them in separate runs or rename one"
                )
            seen[target] = path
    return None
