"""The sources of a many-file run: paths, folders (recursive, audio files only) and globs, listed lazily.

Nothing here holds the whole listing: folders are walked and globs expanded
as the run consumes them, so a million files cost a million small steps, not
a million-entry list. Each source also gets its output name, which mirrors
the input tree (see :func:`output_key`), so equal stems in different folders
never write the same file.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["AUDIO_SUFFIXES", "iter_sources", "output_key"]

#: What a folder walk picks up (the formats ``open_audio_file`` reads); other files in a folder are skipped.
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"})


def iter_sources(sources: Any) -> Iterator[str]:
    """Absolute paths of every source, in order: a path as given, a folder's audio files, a glob's matches.

    A path that names no file is yielded as it is, so that it fails as one
    source (with the reason) rather than being dropped without a word.
    """
    items: Iterable[Any] = [sources] if isinstance(sources, (str, os.PathLike)) else sources
    for item in items:
        name = os.fspath(item)
        if os.path.isdir(name):
            yield from _walk(name)
        elif glob.has_magic(name) and not os.path.exists(name):
            for match in glob.iglob(name, recursive=True):
                if os.path.isdir(match):
                    yield from _walk(match)
                elif _is_audio(match):
                    yield os.path.abspath(match)
        else:
            yield os.path.abspath(name)


def _walk(top: str) -> Iterator[str]:
    """A folder's audio files, recursively, in sorted order (so two runs list them alike)."""
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if _is_audio(name):
                yield os.path.abspath(os.path.join(folder, name))


def _is_audio(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES


def output_key(path: str, base: str | None = None) -> str:
    """Where a source's outputs go under the output folder, without suffix: its path relative to ``base``
    (the working directory) with the audio suffix dropped; a path outside ``base`` keeps its whole path
    (anchor dropped), so that two distinct inputs never share a key."""
    base = os.path.abspath(base or os.getcwd())
    relative = os.path.relpath(path, base) if _inside(path, base) else os.path.splitdrive(path)[1].lstrip(os.sep)
    return os.path.splitext(relative)[0]


def _inside(path: str, base: str) -> bool:
    try:
        return os.path.commonpath([path, base]) == base
    except ValueError:  # another drive
        return False
