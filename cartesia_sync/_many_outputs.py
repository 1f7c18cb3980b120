"""The output files of one source (txt, json, srt, vtt), each written atomically: a temporary file, then a rename.

A crash at any moment leaves either the previous file or the new one, never
half of one. A process killed between creating its temporary file and the
rename leaves that ``.part`` file behind; the next run over the same output
folder removes it (:func:`sweep_leftovers`). Subtitles are segmented and formatted by the bundled
``subtitle_cues`` module, the code the command line's ``--srt``/``--vtt``
use (imported here only when subtitles are asked for, as the command line does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from ._result import TranscriptionResult
from .errors import ConfigurationError

__all__ = ["FORMATS", "check_formats", "write_outputs", "result_json", "sweep_leftovers"]

log = logging.getLogger("cartesia_sync.many")

FORMATS = ("txt", "json", "srt", "vtt")
#: A temporary file this old is abandoned whoever made it: writing one takes milliseconds.
STALE_PART_SECONDS = 600.0
#: This machine, as it appears in temporary names (a short hash: host names may hold dots).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
#: ``.<output name>.<pid>@<host>.<random>.part``, as :func:`_write_atomically` names them.
_PART = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[0-9a-f]{8})\.[A-Za-z0-9_]+\.part$")


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


def sweep_leftovers(out_dir: str, *, now: float | None = None) -> int:
    """Remove the temporary files earlier runs left in ``out_dir`` when they were killed; returns how many.

    A ``.part`` file is removed when the process that made it (named in the
    file's name) is gone from this machine, or when it is older than
    :data:`STALE_PART_SECONDS` whichever machine made it (a Dask worker
    elsewhere). A file a live process may still be renaming is left alone, so
    two runs over one folder do not trip each other. Files not named as this
    module names them are never touched.
    """
    if not os.path.isdir(out_dir):
        return 0
    now = time.time() if now is None else now
    removed = 0
    for folder, _, names in os.walk(out_dir):
        for name in names:
            match = _PART.match(name)
            if match is None:
                continue
            path = os.path.join(folder, name)
            try:
                old = now - os.stat(path).st_mtime > STALE_PART_SECONDS
                if old or (match["host"] == _HOST and not _process_alive(int(match["pid"]))):
                    os.unlink(path)
                    removed += 1
            except OSError:
                continue  # gone already, or not ours to remove
    if removed:
        log.info("removed %d temporary file(s) left in %s by an interrupted run", removed, out_dir)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True  # elsewhere os.kill(pid, 0) would end the process: only age counts there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (owned by someone else)
    return True


def _write_atomically(path: str, text: str) -> None:
    folder, name = os.path.split(path)
    prefix = f".{name}.{os.getpid()}@{_HOST}."
    descriptor, temporary = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=folder or ".")
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
