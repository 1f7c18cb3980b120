"""The resume manifest of a many-file run: ``manifest.jsonl``, one JSON line per finished source.

Append-only and written by one process (the one running the batch), each
line flushed and synced as its source finishes, so a crash loses at most the
line being written. The reader tolerates a torn last line (and any line that
is not a JSON object), as the event-log reader does; the writer starts on a
fresh line after one.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

__all__ = ["Manifest", "file_sha256"]

_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Manifest:
    """The manifest at ``path``: what earlier runs finished, and the writer of this run's lines."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Any = None

    def done(self) -> dict[str, tuple[int, str]]:
        """Sources finished without error by earlier runs: path -> (size, sha256); the latest line wins."""
        found: dict[str, tuple[int, str]] = {}
        if not os.path.exists(self.path):
            return found
        with open(self.path, "rb") as file:
            for raw in file:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue  # a torn line
                if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
                    continue
                if entry.get("status") == "done" and isinstance(entry.get("sha256"), str):
                    found[entry["source"]] = (int(entry.get("size", -1)), entry["sha256"])
                else:
                    found.pop(entry["source"], None)
        return found

    def append(self, entry: dict[str, Any]) -> None:
        """Write one line, flushed and synced, so that it is on disk before the next source is counted."""
        if self._file is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the run, closed by close()
            if self._file.tell() > 0 and not _ends_with_newline(self.path):
                self._file.write(b"\n")  # after a torn line
        self._file.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the writer, if it was opened."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"
