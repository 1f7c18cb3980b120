"""Cutting a long batch upload into segments at quiet moments, so that several engine streams decode it at once.

A stream decodes on one core (pocketsphinx holds one process per stream), so a
10-minute upload fed to one stream keeps one core busy and leaves the others
idle. Cut into segments of about :data:`SEGMENT_SECONDS`, each ending at the
quietest moment of its last :data:`SEARCH_SECONDS` (a pause between words or
sentences, where no word is split), the segments decode side by side and
their results, shifted to the upload's clock, read as one.

The audio is read as it is cut: at most one segment and the block being read
are held here, so memory does not grow with the upload.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ._engine import ENGINE_SAMPLE_RATE

__all__ = ["Segment", "SEGMENT_SECONDS", "SEARCH_SECONDS", "cut_segments", "quietest_cut"]

#: The length a segment is cut at, give or take the search window.
SEGMENT_SECONDS = 30.0
#: How far back from the target length the cut looks for the quietest moment.
SEARCH_SECONDS = 5.0
#: The stretch whose loudness is compared when looking for the quietest moment.
_QUIET_WINDOW_SECONDS = 0.2
_SAMPLE_BYTES = 2  # 16 kHz mono s16le


@dataclass(frozen=True)
class Segment:
    """A stretch of the upload: its position, its first sample, and its audio (16 kHz mono s16le)."""

    index: int
    start_sample: int
    audio: bytes

    @property
    def start_seconds(self) -> float:
        """Where the segment starts, in seconds from the start of the upload."""
        return self.start_sample / ENGINE_SAMPLE_RATE


def cut_segments(
    blocks: Iterable[bytes], segment_seconds: float = SEGMENT_SECONDS, search_seconds: float = SEARCH_SECONDS
) -> Iterator[Segment]:
    """The audio of ``blocks`` as consecutive segments covering every sample once, in order.

    :raises ValueError: a segment shorter than one sample, or a search window of none.
    """
    target = int(segment_seconds * ENGINE_SAMPLE_RATE) * _SAMPLE_BYTES
    search = min(int(search_seconds * ENGINE_SAMPLE_RATE) * _SAMPLE_BYTES, target)
    if target < _SAMPLE_BYTES or search < _SAMPLE_BYTES:
        raise ValueError(
            f"segments need at least one sample and a search window of one: got {segment_seconds!r} s "
            f"and {search_seconds!r} s"
        )
    pending = bytearray()
    index = start = 0
    for block in blocks:
        pending += block
        while len(pending) >= target:
            cut = quietest_cut(bytes(pending[target - search : target])) + target - search
            yield Segment(index, start, bytes(pending[:cut]))
            index += 1
            start += cut // _SAMPLE_BYTES
            del pending[:cut]
    if pending:
        yield Segment(index, start, bytes(pending))


def quietest_cut(audio: bytes) -> int:
    """The byte offset in ``audio`` (16 kHz mono s16le) at the middle of its quietest stretch.

    Loudness is the energy of :data:`_QUIET_WINDOW_SECONDS` windows; of equally
    quiet ones the latest wins, so that a segment is as long as it can be.
    Always a whole sample, never 0 (a segment is never empty).
    """
    samples = np.frombuffer(audio, dtype="<i2").astype(np.int64)
    window = max(1, int(_QUIET_WINDOW_SECONDS * ENGINE_SAMPLE_RATE))
    if len(samples) <= window:
        return max(_SAMPLE_BYTES, len(samples) * _SAMPLE_BYTES)
    running = np.concatenate(([0], np.cumsum(samples * samples)))  # exact in int64: silence sums to 0
    energy = running[window:] - running[:-window]
    latest_quietest = len(energy) - 1 - int(np.argmin(energy[::-1]))
    return max(1, latest_quietest + window // 2) * _SAMPLE_BYTES
