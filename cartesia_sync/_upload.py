"""What a batch transcription uploads: a file as it is, a file converted once to WAV, or raw PCM.

The batch endpoint decodes flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav and
webm itself, so a file in one of those containers (recognised by its first
bytes, not its name) is uploaded untouched, streamed from disk. Any other file
this library can decode (RF64, AIFF, ...) is converted once, block by block, to
a 16-bit WAV in a temporary file. ``bytes`` and numpy arrays go as raw PCM, with
their ``encoding`` and ``sample_rate`` in the query, as the API asks.
"""

from __future__ import annotations

import io
import mimetypes
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ._audio import AudioConverter
from ._audio_files import open_audio_file
from .errors import AudioFormatError

__all__ = ["Upload", "prepare_upload", "sniff_container", "ACCEPTED_CONTAINERS"]

#: Containers the batch endpoint decodes itself (protocol reference, section 2.1).
ACCEPTED_CONTAINERS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")

#: Reading a file for conversion: frames per block (memory stays small for any length).
_BLOCK_FRAMES = 65536


@dataclass
class Upload:
    """One input ready to upload.

    :ivar filename: the name sent with the ``file`` part.
    :ivar content_type: its MIME type.
    :ivar size: bytes to upload.
    :ivar query: ``encoding`` and ``sample_rate`` for raw PCM, else empty.
    :ivar audio_seconds: the audio's length when known before the upload.
    :ivar describe: what the input is, for messages.
    """

    filename: str
    content_type: str
    size: int
    query: list[tuple[str, str]]
    audio_seconds: float | None
    describe: str
    _open: Callable[[], IO[bytes]] = field(repr=False)
    _cleanup: Callable[[], None] = field(repr=False, default=lambda: None)

    def open(self) -> IO[bytes]:
        """A fresh binary reader positioned at the start; the caller closes it."""
        return self._open()

    def close(self) -> None:
        """Remove a temporary conversion, if one was made."""
        self._cleanup()


def sniff_container(head: bytes) -> str | None:
    """The accepted container a file's first bytes announce, or ``None``.

    RF64 and WAV files of a format other than RIFF/WAVE are not recognised:
    they are converted.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    # MPEG audio: a frame sync (11 bits set) with a layer (bits 1-2 not 00, which is ADTS AAC)
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "mp3"
    return None


def prepare_upload(source: Any, *, sample_rate: int, encoding: str, bytes_per_sample: int) -> Upload:
    """Turn a path, ``bytes`` or a numpy array into an :class:`Upload`.

    :param sample_rate: the rate of raw input (bytes and arrays).
    :param encoding: the encoding of raw ``bytes`` (arrays are sent as ``pcm_s16le``).
    :param bytes_per_sample: of that encoding, to know the audio's length.
    :raises AudioFormatError: the input is not audio this library or the API can read.
    :raises FileNotFoundError: a path that does not exist.
    """
    if isinstance(source, (str, os.PathLike)):
        return _file_upload(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source) if not isinstance(source, bytes) else source
        return _raw_upload(data, encoding, sample_rate, bytes_per_sample, "raw audio bytes")
    if isinstance(source, np.ndarray):
        converter = AudioConverter(sample_rate)
        data = converter.convert(source, sample_rate=sample_rate) + converter.flush()
        return _raw_upload(data, "pcm_s16le", sample_rate, 2, "an audio array")
    raise AudioFormatError(
        f"batch transcription takes a path, bytes or a numpy array, got {type(source).__name__}; "
        "stream other sources with mode='stream'"
    )


def _raw_upload(data: bytes, encoding: str, rate: int, width: int, describe: str) -> Upload:
    if not data:
        raise AudioFormatError(f"{describe} hold no audio (0 bytes)")
    query = [("encoding", encoding), ("sample_rate", str(rate))]
    return Upload(
        "upload",
        "application/octet-stream",
        len(data),
        query,
        len(data) / width / rate,
        describe,
        lambda: io.BytesIO(data),
    )


def _file_upload(path: str) -> Upload:
    with open(path, "rb") as handle:
        head = handle.read(16)
        size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise AudioFormatError(f"{path!r} is empty (0 bytes); expected an audio file")
    container = sniff_container(head)
    name = os.path.basename(path)
    if container is not None:
        guessed = mimetypes.guess_type(name)[0]
        content_type = guessed if guessed and guessed.startswith(("audio/", "video/")) else f"audio/{container}"
        return Upload(name, content_type, size, [], None, repr(path), lambda: open(path, "rb"))
    return _converted(path, name)


def _converted(path: str, name: str) -> Upload:
    """Convert a file the API does not take to a 16-bit WAV in a temporary file, block by block."""
    import soundfile

    with open_audio_file(path) as reader:
        info = reader.info
        handle, temp = tempfile.mkstemp(prefix="cartesia-sync-", suffix=".wav")
        os.close(handle)
        try:
            with soundfile.SoundFile(
                temp, "w", samplerate=info.sample_rate, channels=info.channels, subtype="PCM_16", format="WAV"
            ) as out:
                for block in reader.blocks(_BLOCK_FRAMES):
                    out.write(block if block.dtype == np.int16 else np.clip(block, -1.0, 1.0))
        except BaseException:
            os.unlink(temp)
            raise
    size = os.path.getsize(temp)
    stem = os.path.splitext(name)[0] or "upload"
    return Upload(
        f"{stem}.wav",
        "audio/wav",
        size,
        [],
        info.duration,
        f"{path!r} ({info.format}, converted to WAV)",
        lambda: open(temp, "rb"),
        lambda: _remove(temp),
    )


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
