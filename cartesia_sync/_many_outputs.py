"""The output files of one source (txt, json, srt, vtt), each written atomically: a temporary file, then a rename.

A crash at any moment leaves either the previous file or the new one, never
half of one. Subtitles are segmented and formatted by the bundled
``subtitle_cues`` module, the code the command line's ``--srt``/``--vtt``
use (imported here only when subtitles are asked for, as the command line does).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from ._result import TranscriptionResult
from .errors import ConfigurationError

__all__ = ["FORMATS", "check_formats", "write_outputs", "result_json"]

FORMATS = ("txt", "json", "srt", "vtt")


def check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """The formats as a tuple, each known and none twice.

    :raises ConfigurationError: an unknown format.
    """
    chosen = tuple(part.strip() for part in formats.split(",")) if isinstance(formats, str) else tuple(formats)
    unknown = [name for name in chosen if name not in FORMATS]
    if unknown or not chosen:
        raise ConfigurationError(f"formats must be some of {', '.join(FORMATS)}, got {', '.join(chosen) or 'none'}")
    return tuple(dict.fromkeys(chosen))


def result_json(result: TranscriptionResult) -> dict[str, Any]:
    """A result as the JSON written for it: text, words with times, and how it was made."""
    return {
        "text": result.text,
        "words": [{"word": w.word, "start": w.start, "end": w.end} for w in result.words],
        "audio_seconds": round(result.audio_seconds, 3),
        "wall_seconds": round(result.wall_seconds, 3),
        "request_id": result.request_id,
        "mode": result.mode,
        "language": result.language,
        "complete": result.complete,
    }


def write_outputs(result: TranscriptionResult, base: str, formats: Sequence[str]) -> list[str]:
    """Write ``base.<format>`` for each format; returns the paths written."""
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    written = []
    for name in formats:
        path = f"{base}.{name}"
        _write_atomically(path, _render(result, name))
        written.append(path)
    return written


def _render(result: TranscriptionResult, name: str) -> str:
    if name == "txt":
        return result.text.strip() + "\n"
    if name == "json":
        return json.dumps(result_json(result), ensure_ascii=False, indent=2) + "\n"
    from cartesia_sync_plugins.subtitle_cues import VTT_HEADER, format_srt_cue, format_vtt_cue, segment_words

    cues = segment_words(result.words)
    if name == "srt":
        return "".join(str(format_srt_cue(index, cue)) for index, cue in enumerate(cues, 1))
    return str(VTT_HEADER) + "".join(format_vtt_cue(cue) for cue in cues)


def _write_atomically(path: str, text: str) -> None:
    folder, name = os.path.split(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder or ".")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
