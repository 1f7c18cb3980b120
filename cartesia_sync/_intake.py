"""Audio intake: caller audio in, fixed-size wire frames out, queued in order from any thread.

The intake owns the conversion state (the resampler) and the partial frame
that is waiting for more samples, so it serialises callers with one lock: audio
and commands reach the queue in the order the calls were made.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ._audio import AudioConverter
from ._audio_files import AudioFileInfo, open_audio_file
from ._audio_queue import AudioQueue, Command, acquire_interruptibly
from ._config import ENCODINGS, ConnectionSettings, SessionOptions
from ._stats import StatsCounter
from .errors import AudioFormatError, SessionClosedError, StreamTimeout

__all__ = ["AudioIntake"]

#: Block size when reading files, in seconds of source audio.
_FILE_BLOCK_SECONDS = 1.0


class AudioIntake:
    """Converts, re-chunks and queues one session's audio.

    :param settings: the connection's encoding and rate.
    :param options: frame duration and send timeout.
    :param queue: where frames and commands go.
    :param stats: counters to update (``audio_queued``, ``audio_dropped``).
    :param on_drop: called with the number of bytes the ``drop_oldest`` policy discarded.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        options: SessionOptions,
        queue: AudioQueue,
        stats: StatsCounter,
        on_drop: Callable[[int], None],
    ) -> None:
        self._settings = settings
        self._send_timeout = options.send_timeout
        self._bytes_per_sample = ENCODINGS[settings.encoding]
        samples_per_frame = max(1, round(options.frame_duration * settings.sample_rate))
        self.frame_bytes = samples_per_frame * self._bytes_per_sample
        self._queue = queue
        self._stats = stats
        self._on_drop = on_drop
        self._converter = AudioConverter(settings.sample_rate)
        self._pending = bytearray()
        self._lock = threading.Lock()

    @property
    def converts(self) -> bool:
        """True when arrays, other rates and files are converted (s16le sessions)."""
        return self._settings.encoding == "pcm_s16le"

    def add(
        self, audio: Any, sample_rate: int | None, channels: int | None, guard: Callable[[], None] = lambda: None
    ) -> None:
        """Convert ``audio`` and queue every whole frame; the rest waits for more.

        :param guard: called under the lock first; raises to refuse the call
            (the session checks that it is still open, so nothing slips in
            after the end command).
        :raises AudioFormatError: the audio cannot be converted; nothing was queued.
        :raises StreamTimeout: the queue stayed full; the part of this call's
            audio that was not queued is dropped and counted, never sent twice.
        :raises SessionClosedError: the queue was closed.
        """
        self._acquire()
        try:
            guard()
            self._queue_wire_bytes(self._convert(audio, sample_rate, channels))
        finally:
            self._lock.release()

    def add_file(self, path: str | os.PathLike[str], guard: Callable[[], None]) -> AudioFileInfo:
        """Decode a file block by block and queue it; ``guard()`` runs before each block.

        :raises AudioFormatError: the file cannot be decoded, or this session
            does not convert audio; nothing was queued when the header is bad.
        """
        if not self.converts:
            raise AudioFormatError(
                f"send_file() converts audio to pcm_s16le, but this session's encoding is "
                f"{self._settings.encoding}; connect with encoding='pcm_s16le' or send raw bytes with send()"
            )
        with open_audio_file(path) as reader:
            info = reader.info
            for samples in reader.blocks(max(1, round(info.sample_rate * _FILE_BLOCK_SECONDS))):
                self.add(samples, info.sample_rate, None, guard)
        return info

    def add_command(
        self, command: Command, on_queued: Callable[[], None] | None = None, guard: Callable[[], None] = lambda: None
    ) -> None:
        """Queue the resampler's tail, the last partial frame, then ``command``.

        :param on_queued: called under the intake's lock right before the
            command is queued, so bookkeeping keeps the command order.
        :param guard: called under the lock first; raises to refuse the command.
        """
        self._acquire()
        try:
            guard()
            if self.converts:
                self._queue_wire_bytes(self._converter.flush())
            while self._pending:
                frame = bytes(self._pending[: self.frame_bytes])
                self._put_frame(frame)
                del self._pending[: len(frame)]
            if on_queued is not None:
                on_queued()
            self._queue.put_command(command)
        finally:
            self._lock.release()

    def discard(self) -> int:
        """Forget the partial frame still waiting for samples; returns its size in bytes."""
        if not acquire_interruptibly(self._lock, self._send_timeout + 1.0):
            return 0
        try:
            size = len(self._pending)
            self._pending.clear()
            return size
        finally:
            self._lock.release()

    # -- internals -----------------------------------------------------------

    def _acquire(self) -> None:
        """Take the lock, or raise :class:`StreamTimeout` when another call holds it too long."""
        timeout = self._send_timeout + 1.0
        if not acquire_interruptibly(self._lock, timeout):
            raise StreamTimeout(
                f"waited {timeout:g} s for another thread's send() to finish; the connection is stalled"
            )

    def _convert(self, audio: Any, sample_rate: int | None, channels: int | None) -> bytes:
        if self.converts:
            return self._converter.convert(audio, sample_rate=sample_rate, channels=channels)
        encoding = self._settings.encoding
        if (
            not isinstance(audio, (bytes, bytearray, memoryview))
            or sample_rate not in (None, self._settings.sample_rate)
            or channels not in (None, 1)
        ):
            raise AudioFormatError(
                f"this session's encoding is {encoding}: pass mono bytes in that encoding at "
                f"{self._settings.sample_rate} Hz, or connect with encoding='pcm_s16le' to send arrays, other rates "
                "and files"
            )
        data = bytes(audio)
        if len(data) % self._bytes_per_sample:
            raise AudioFormatError(
                f"got {len(data)} bytes, which is not a whole number of {encoding} samples "
                f"({self._bytes_per_sample} bytes each); expected whole samples"
            )
        return data

    def _queue_wire_bytes(self, data: bytes) -> None:
        if not data:
            return
        self._stats.add("audio_queued", len(data))
        if self._pending:  # a partial frame from an earlier call goes first
            data = bytes(self._pending) + data
            self._pending.clear()
        frame_bytes = self.frame_bytes
        whole = len(data) - len(data) % frame_bytes
        queued = 0
        try:
            while queued < whole:  # a call of exactly one frame queues the caller's bytes object itself
                self._put_frame(data[queued : queued + frame_bytes])
                queued += frame_bytes
        except SessionClosedError:
            self._stats.add("audio_unsent", len(data) - queued)  # the session ended while this call waited for room
            raise
        except StreamTimeout as exc:
            dropped = len(data) - queued
            self._stats.add("audio_dropped", dropped)
            self._on_drop(dropped)
            raise StreamTimeout(
                f"{exc}; {dropped} bytes of audio that could not be queued were dropped (see stats.audio_dropped): "
                "do not resend them, the rest was queued"
            ) from None
        self._pending += data[whole:]

    def _put_frame(self, frame: bytes) -> None:
        dropped = self._queue.put_audio(frame, self._send_timeout)
        if dropped:
            self._stats.add("audio_dropped", dropped)
            self._on_drop(dropped)
