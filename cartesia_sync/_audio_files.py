"""Reading audio files and streaming them in blocks of frames.

WAV and RF64 are parsed here (float, EXTENSIBLE and streamed WAVs included); every other
format (FLAC, OGG, MP3, AIFF, ...) goes through ``soundfile``, imported only when needed.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np

from ._native_stderr import DECODER_NOISE, native_stderr_filtered
from .errors import AudioFormatError

__all__ = ["AudioFileInfo", "AudioFileReader", "open_audio_file"]

logger = logging.getLogger("cartesia_sync.audio_files")

_SUPPORTED = "WAV (PCM 8/16/24/32-bit, float 32/64-bit), FLAC, OGG, MP3, AIFF"
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_BITS = MappingProxyType({_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)})
_TAG_NAMES = MappingProxyType({2: "Microsoft ADPCM", 6: "A-law", 7: "mu-law", 0x11: "IMA ADPCM", 0x55: "MP3"})
_UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class AudioFileInfo:
    """What an audio file holds.

    :param path: the path the file was opened with.
    :param format: a readable description, e.g. ``"WAV PCM 24-bit"`` or ``"FLAC PCM_16"``.
    :param sample_rate: frames per second.
    :param channels: samples per frame.
    :param frames: the number of frames.
    """

    path: str
    format: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """The length of the audio in seconds."""
        return self.frames / self.sample_rate


class AudioFileReader:
    """An open audio file; use it as a context manager, or call :meth:`close`.

    :attr:`info` describes the file. :meth:`blocks` yields arrays shaped
    ``(frames, channels)``: int16 for 16-bit PCM, float32 in -1..1 otherwise.
    Obtain instances from :func:`open_audio_file`.
    """

    info: AudioFileInfo

    def __init__(self, info: AudioFileInfo) -> None:
        """Start a reader for the file that *info* describes; see :func:`open_audio_file`."""
        self.info = info
        self.closed = False

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Yield the audio in blocks of *block_frames* frames; the last may be shorter.

        :param block_frames: frames per block, at least 1.
        :returns: an iterator of ``(frames, channels)`` arrays, from the first frame on every call.
        :raises ValueError: if *block_frames* is not a positive integer, or the reader is closed.
        """
        if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
            raise ValueError(f"block_frames must be a positive integer; got {block_frames!r}")
        if self.closed:
            raise ValueError(f"the reader for {self.info.path!r} is closed; open the file again")
        return self._iter_blocks(block_frames)

    def _iter_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Generate the blocks for :meth:`blocks`, stopping early if the file turns out shorter."""
        position = 0
        while position < self.info.frames:
            block = self._read(position, min(block_frames, self.info.frames - position))
            if len(block) == 0:
                return
            position += len(block)
            yield block

    def close(self) -> None:
        """Close the file; calling it again does nothing."""
        self.closed = True

    def _read(self, position: int, frames: int) -> np.ndarray:
        """Return up to *frames* frames starting at frame *position*."""
        raise NotImplementedError

    def __enter__(self) -> AudioFileReader:
        """Return the reader itself."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Close the reader."""
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.info.path!r} {self.info.format} {state}>"


@dataclass(frozen=True)
class _WavLayout:
    """Where and how the samples of a WAV file are stored."""

    tag: int
    bits: int
    channels: int
    sample_rate: int
    data_offset: int
    frames: int


class _WavReader(AudioFileReader):
    """Reads the data chunk of a parsed WAV file with seeks, one block at a time."""

    def __init__(self, info: AudioFileInfo, layout: _WavLayout, handle: BinaryIO) -> None:
        super().__init__(info)
        self._layout = layout
        self._handle = handle

    def _read(self, position: int, frames: int) -> np.ndarray:
        lay = self._layout
        frame_bytes = lay.channels * lay.bits // 8
        self._handle.seek(lay.data_offset + position * frame_bytes)
        raw = self._handle.read(frames * frame_bytes)
        raw = raw[: len(raw) - len(raw) % frame_bytes]
        return _decode(raw, lay.tag, lay.bits).reshape(-1, lay.channels)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _decode(raw: bytes, tag: int, bits: int) -> np.ndarray:
    """Decode interleaved little-endian samples to int16 (16-bit PCM) or float32 in -1..1."""
    if tag == _FLOAT:
        return np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    if bits == 16:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if bits == 8:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if bits == 24:
        padded = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        padded[:, 1:] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        wide = padded.view("<i4").reshape(-1)  # the 24-bit value shifted left by 8
    else:
        wide = np.frombuffer(raw, dtype="<i4")
    return (wide.astype(np.float64) / 2.0**31).astype(np.float32)


def _parse_wav(handle: BinaryIO, name: str, size: int) -> _WavLayout:
    """Walk the RIFF/RF64 chunks of *handle* and return the layout of its samples.

    :raises AudioFormatError: for truncated headers, missing chunks and unsupported formats.
    """
    head = handle.read(12)
    if len(head) < 12:
        raise AudioFormatError(f"{name} is truncated: {len(head)} bytes; a WAV header needs at least 12")
    if head[8:12] != b"WAVE":
        kind = head[8:12].decode("latin-1")
        raise AudioFormatError(f"{name} is a RIFF file of type {kind!r}, not WAVE; supported: {_SUPPORTED}")
    rf64_data_size: int | None = None
    fmt: bytes | None = None
    data: tuple[int, int] | None = None
    seen: list[str] = []
    pos = 12
    while pos + 8 <= size and (fmt is None or data is None):
        handle.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
        seen.append(chunk_id.decode("latin-1"))
        body = pos + 8
        if chunk_id == b"data":
            if chunk_size == _UNKNOWN_SIZE and rf64_data_size is not None:
                chunk_size = rf64_data_size
            chunk_size = min(chunk_size, size - body)  # streamed or cut files claim more than is there
            data = (body, chunk_size)
        elif chunk_id in (b"fmt ", b"ds64"):
            if chunk_size < 16 or body + chunk_size > size:  # fmt: tag..bits; ds64: riff + data size
                present = max(0, min(chunk_size, size - body))
                raise AudioFormatError(
                    f"{name} is truncated or damaged: its {chunk_id.decode()!r} chunk declares "
                    f"{chunk_size} bytes, {present} are present, and at least 16 are needed"
                )
            payload = handle.read(min(chunk_size, 64))
            if chunk_id == b"fmt ":
                fmt = payload
            else:
                rf64_data_size = struct.unpack("<Q", payload[8:16])[0]
        pos = body + chunk_size + (chunk_size & 1)
    if fmt is None:
        raise AudioFormatError(f"{name} has no 'fmt ' chunk (chunks found: {seen}); it is not a valid WAV")
    if data is None:
        raise AudioFormatError(f"{name} has no 'data' chunk (chunks found: {seen}); it holds no audio")
    return _layout_from_fmt(fmt, data, name)


def _layout_from_fmt(fmt: bytes, data: tuple[int, int], name: str) -> _WavLayout:
    """Validate a 'fmt ' chunk payload and combine it with the data chunk's position and size."""
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE:
        if len(fmt) < 40:
            message = f"{name} declares WAVE_FORMAT_EXTENSIBLE but its 'fmt ' chunk has {len(fmt)} bytes"
            raise AudioFormatError(message + "; expected 40")
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag not in _BITS:
        label = f"{tag} ({_TAG_NAMES[tag]})" if tag in _TAG_NAMES else f"{tag}"
        raise AudioFormatError(
            f"{name} uses WAV format tag {label}, which is not supported; supported tags: 1 (PCM), "
            "3 (IEEE float), 0xFFFE (EXTENSIBLE with a PCM or float subformat); convert it to PCM"
        )
    kind = "PCM" if tag == _PCM else "float"
    if bits not in _BITS[tag]:
        raise AudioFormatError(
            f"{name} is {bits}-bit {kind}, which is not supported; expected {kind} {'/'.join(map(str, _BITS[tag]))}-bit"
        )
    if channels == 0 or rate == 0:
        raise AudioFormatError(
            f"{name} declares {channels} channel(s) at {rate} Hz; expected at least 1 channel and a rate above 0"
        )
    if block_align != channels * bits // 8:
        raise AudioFormatError(
            f"{name} declares block_align {block_align}, but {channels} channel(s) of {bits}-bit "
            f"samples need {channels * bits // 8}; the header is damaged"
        )
    offset, nbytes = data
    frames = nbytes // block_align
    if frames == 0:
        raise AudioFormatError(f"{name} contains no audio (0 frames)")
    return _WavLayout(tag, bits, channels, rate, offset, frames)


class _SoundFileReader(AudioFileReader):
    """Reads any format libsndfile knows through a ``soundfile.SoundFile``."""

    def __init__(self, info: AudioFileInfo, sound_file: Any) -> None:
        super().__init__(info)
        self._file = sound_file
        self._dtype = "int16" if sound_file.subtype == "PCM_16" else "float32"

    def _read(self, position: int, frames: int) -> np.ndarray:
        with native_stderr_filtered(
            DECODER_NOISE, logger, f"libmpg123 printed while decoding {self.info.path}"
        ):  # libmpg123 chatters
            if self._file.tell() != position:
                self._file.seek(position)
            block: np.ndarray = self._file.read(frames, dtype=self._dtype, always_2d=True)
            return block

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_with_soundfile(path: str, name: str) -> AudioFileReader:
    """Open a non-WAV file with soundfile (imported here so that importing this module stays light)."""
    import soundfile

    try:
        with native_stderr_filtered(DECODER_NOISE, logger, f"libmpg123 printed while opening {name}"):
            sound_file = soundfile.SoundFile(path)
    except RuntimeError as exc:  # soundfile.LibsndfileError
        reason = (getattr(exc, "error_string", None) or str(exc)).rstrip(".")
        message = f"could not read {name} as audio: {reason}; supported: {_SUPPORTED}"
        raise AudioFormatError(message) from exc
    if sound_file.frames <= 0:
        sound_file.close()
        raise AudioFormatError(f"{name} contains no audio (0 frames)")
    fmt = f"{sound_file.format} {sound_file.subtype}"
    info = AudioFileInfo(path, fmt, sound_file.samplerate, sound_file.channels, sound_file.frames)
    return _SoundFileReader(info, sound_file)


def open_audio_file(path: str | os.PathLike[str]) -> AudioFileReader:
    """Open an audio file for reading in blocks: WAV/RF64 are parsed here, the rest by libsndfile.

    :param path: the file to open.
    :returns: an open :class:`AudioFileReader`; close it, or use it in a ``with`` block.
    :raises FileNotFoundError: if *path* does not exist.
    :raises IsADirectoryError: if *path* is a directory.
    :raises AudioFormatError: if the file is empty, holds no audio, is damaged or is in an
        unsupported format; the message says which.
    """
    text = os.fspath(path)
    name = repr(text)
    handle: BinaryIO = open(text, "rb")  # noqa: SIM115 - handed to the returned reader, which closes it
    try:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise AudioFormatError(f"{name} is empty (0 bytes); expected an audio file")
        magic = handle.read(4)
        if magic in (b"RIFF", b"RF64"):
            handle.seek(0)
            layout = _parse_wav(handle, name, size)
            kind = "PCM" if layout.tag == _PCM else "float"
            container = "WAV" if magic == b"RIFF" else "RF64"
            fmt = f"{container} {kind} {layout.bits}-bit"
            info = AudioFileInfo(text, fmt, layout.sample_rate, layout.channels, layout.frames)
            return _WavReader(info, layout, handle)
    except BaseException:
        handle.close()
        raise
    handle.close()
    return _open_with_soundfile(text, name)
