"""Conversion of caller audio into the session's wire format (s16le mono PCM).

:class:`AudioConverter` accepts raw s16le bytes or numpy arrays of several
dtypes and shapes, downmixes them to mono, resamples them to the session's
rate with a streaming soxr resampler, and returns little-endian 16-bit bytes.
:func:`duration_of` and :func:`silence` are small pure helpers.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

from .errors import AudioFormatError

__all__ = ["SAMPLE_WIDTH", "MAX_CHANNELS", "AudioConverter", "duration_of", "silence"]

SAMPLE_WIDTH = 2
"""Bytes per s16le sample."""

MAX_CHANNELS = 32
"""The most channels an input array or byte stream may have."""

_ACCEPTED_DTYPES = "int16, int32, uint8, float32 or float64"
_ACCEPTED_KINDS = frozenset({("i", 2), ("i", 4), ("u", 1), ("f", 4), ("f", 8)})
_SHAPE_HINT = "expected (frames,) or (frames, channels); for channel-first arrays pass arr.T"

AudioInput = bytes | bytearray | memoryview | np.ndarray


def _check_rate(value: object, what: str) -> int:
    """Return *value* as an int sample rate, or raise if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise AudioFormatError(
            f"{what} must be a positive integer number of Hz; got {value!r} ({type(value).__name__})"
        )
    return int(value)


def _check_channels(value: object) -> int:
    """Return *value* as a channel count, or raise if it is not an int in 1..MAX_CHANNELS."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_CHANNELS:
        raise AudioFormatError(f"channels must be an integer from 1 to {MAX_CHANNELS}; got {value!r}")
    return int(value)


def _to_int16(x: np.ndarray) -> np.ndarray:
    """Quantise float audio in -1..1 to int16, rounding and clipping."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _bytes_to_array(data: bytes | bytearray | memoryview, channels: int) -> np.ndarray:
    """View s16le interleaved bytes as an int16 array shaped (frames,) or (frames, channels)."""
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    view = view.cast("B")
    frame_bytes = SAMPLE_WIDTH * channels
    if view.nbytes % frame_bytes:
        layout = "mono samples" if channels == 1 else f"{channels}-channel frames"
        raise AudioFormatError(
            f"got {view.nbytes} bytes, which is not a whole number of 16-bit {layout} "
            f"({frame_bytes} bytes each); pass s16le PCM, or a numpy array"
        )
    samples = np.frombuffer(view, dtype="<i2")
    return samples if channels == 1 else samples.reshape(-1, channels)


def _check_shape(arr: np.ndarray, channels: int | None) -> None:
    """Raise unless *arr* is (frames,) or (frames, 1..32) and agrees with *channels*."""
    if arr.ndim == 0 or arr.ndim > 2 or (arr.ndim == 2 and not 1 <= arr.shape[1] <= MAX_CHANNELS):
        raise AudioFormatError(f"got an array of shape {arr.shape}; {_SHAPE_HINT} (at most {MAX_CHANNELS} channels)")
    actual = 1 if arr.ndim == 1 else arr.shape[1]
    if channels is not None and channels != actual:
        raise AudioFormatError(
            f"channels={channels} was given, but the array of shape {arr.shape} has {actual} "
            f"channel(s); {_SHAPE_HINT}, or drop the channels argument"
        )


def _check_finite(arr: np.ndarray) -> None:
    """Raise if a float array holds NaN or infinity, saying how many and where the first is."""
    bad = ~np.isfinite(arr)
    count = int(np.count_nonzero(bad))
    if not count:
        return
    first = np.argwhere(bad)[0]
    where = f"index {first[0]}" if arr.ndim == 1 else f"frame {first[0]}, channel {first[1]}"
    raise AudioFormatError(
        f"float audio contains {count} non-finite sample(s) (NaN or inf), the first at {where}; "
        "expected finite values in -1..1 (clean them, e.g. with numpy.nan_to_num)"
    )


def _check_dtype(dtype: np.dtype) -> None:
    """Raise unless *dtype* is one of the accepted sample types (in either byte order)."""
    if (dtype.kind, dtype.itemsize) not in _ACCEPTED_KINDS:
        raise AudioFormatError(f"arrays of dtype {dtype} are not supported; expected {_ACCEPTED_DTYPES}")


def _normalise(arr: np.ndarray) -> np.ndarray:
    """Turn an array of an accepted dtype into native int16 or float64 in -1..1.

    int16 stays int16; mono int32 becomes int16 by a rounding right shift; every
    other accepted input becomes float64 scaled to -1..1 (clipped for floats).
    Multi-channel input is averaged to mono in float.
    """
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "i" and size == 2:
        native = arr.astype(np.int16, copy=False)
        if native.ndim == 1:
            return native
        mixed: np.ndarray = native.mean(axis=1) / 32768.0
        return mixed
    if kind == "i" and size == 4:
        if arr.ndim == 1:
            wide = (arr.astype(np.int64) + 0x8000) >> 16
            narrowed: np.ndarray = np.clip(wide, -32768, 32767).astype(np.int16)
            return narrowed
        mixed = arr.astype(np.float64).mean(axis=1) / 2.0**31
        return mixed
    if kind == "u":
        floats = (arr.astype(np.float64) - 128.0) / 128.0
        return floats if floats.ndim == 1 else floats.mean(axis=1)
    _check_finite(arr)
    floats = np.clip(arr.astype(np.float64), -1.0, 1.0)
    return floats if floats.ndim == 1 else floats.mean(axis=1)


class AudioConverter:
    """Turns whatever a caller passes to ``Session.send()`` into s16le mono bytes at the target rate.

    Stateful: keeps one :class:`soxr.ResampleStream` for the current input rate so that
    audio split across many :meth:`convert` calls resamples exactly like one long call
    (no clicks at chunk boundaries). Call :meth:`flush` at the end of the audio to get
    the resampler's tail. Not thread-safe; use one converter per session.

    :param target_rate: the session's sample rate in Hz, e.g. 16000.
    :raises AudioFormatError: if *target_rate* is not a positive integer.
    """

    def __init__(self, target_rate: int) -> None:
        self.target_rate: int = _check_rate(target_rate, "target_rate")
        self._stream: soxr.ResampleStream | None = None
        self._stream_rate: int | None = None

    def convert(
        self,
        data: AudioInput,
        *,
        sample_rate: int | None = None,
        channels: int | None = None,
    ) -> bytes:
        """Convert one piece of audio to s16le mono bytes at :attr:`target_rate`.

        Bytes-like input is read as s16le interleaved with *channels* channels.
        Arrays may be int16, int32 (full scale), uint8 (128 = silence) or float32/64
        (-1..1, clipped), shaped ``(frames,)`` or ``(frames, channels)``; channels
        are averaged to mono. Audio at another rate is resampled; the resampler
        holds back a little audio until :meth:`flush` or a rate change.

        :param data: ``bytes``, ``bytearray``, ``memoryview`` or a numpy array.
        :param sample_rate: the rate of *data* in Hz; defaults to :attr:`target_rate`.
        :param channels: channels in *data*; defaults to 1 for bytes and to the
            array's shape for arrays, where it must match if given.
        :returns: little-endian int16 bytes, possibly empty.
        :raises AudioFormatError: if the data, its dtype, shape, channels or rate is unusable.
        """
        rate = self.target_rate if sample_rate is None else _check_rate(sample_rate, "sample_rate")
        if isinstance(data, (bytes, bytearray, memoryview)):
            count = 1 if channels is None else _check_channels(channels)
            wire_format = count == 1 and rate == self.target_rate and self._stream is None
            if wire_format and isinstance(data, bytes) and not len(data) % SAMPLE_WIDTH:
                return data  # the common case, passed through without a copy
            arr = _bytes_to_array(data, count)
            if wire_format:
                return bytes(data) if not isinstance(data, memoryview) else arr.tobytes()
        elif isinstance(data, np.ndarray):
            if channels is not None:
                _check_channels(channels)
            _check_shape(data, channels)
            arr = data[:, 0] if data.ndim == 2 and data.shape[1] == 1 else data
        else:
            raise AudioFormatError(
                f"got audio of type {type(data).__name__}; expected bytes, bytearray, memoryview "
                f"(s16le PCM) or a numpy array of {_ACCEPTED_DTYPES}"
            )
        _check_dtype(arr.dtype)
        if arr.size == 0:
            return b""
        mono = _normalise(arr)
        return self._emit(mono, rate)

    def flush(self) -> bytes:
        """Return the resampler's remaining tail and reset it.

        Call once after the last :meth:`convert` of a stream of audio; the next
        :meth:`convert` starts a fresh resampler.

        :returns: the tail as s16le bytes, or ``b""`` if no resampler is active.
        """
        stream, self._stream, self._stream_rate = self._stream, None, None
        if stream is None:
            return b""
        tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return _to_int16(tail).astype("<i2").tobytes()

    def _emit(self, mono: np.ndarray, rate: int) -> bytes:
        """Resample *mono* from *rate* if needed and encode it, prepending any stale tail."""
        prefix = self.flush() if self._stream is not None and self._stream_rate != rate else b""
        if rate == self.target_rate:
            out = mono if mono.dtype == np.int16 else _to_int16(mono)
            return prefix + out.astype("<i2").tobytes()
        if self._stream is None:
            self._stream = soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality="HQ")
            self._stream_rate = rate
        floats = mono.astype(np.float32) / np.float32(32768.0) if mono.dtype == np.int16 else mono.astype(np.float32)
        resampled = self._stream.resample_chunk(np.ascontiguousarray(floats))
        return prefix + _to_int16(resampled).astype("<i2").tobytes()


def duration_of(nbytes: int, sample_rate: int) -> float:
    """Return the duration in seconds of *nbytes* of s16le mono audio.

    A trailing odd byte (half a sample) is not counted.

    :param nbytes: the number of bytes, zero or more.
    :param sample_rate: the audio's rate in Hz.
    :returns: the duration in seconds.
    :raises AudioFormatError: if *nbytes* is negative or *sample_rate* is not positive.
    """
    rate = _check_rate(sample_rate, "sample_rate")
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise AudioFormatError(f"nbytes must be a non-negative integer; got {nbytes!r}")
    return (int(nbytes) // SAMPLE_WIDTH) / rate


def silence(seconds: float, sample_rate: int) -> bytes:
    """Return *seconds* of s16le mono silence at *sample_rate*, rounded to whole samples.

    :param seconds: the duration, zero or more.
    :param sample_rate: the rate in Hz.
    :returns: zero bytes, ``2 * round(seconds * sample_rate)`` of them.
    :raises AudioFormatError: if *seconds* is negative or not finite, or *sample_rate* is not positive.
    """
    rate = _check_rate(sample_rate, "sample_rate")
    valid = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not valid or not math.isfinite(seconds) or seconds < 0:
        raise AudioFormatError(f"seconds must be a finite number >= 0; got {seconds!r}")
    return bytes(SAMPLE_WIDTH * round(seconds * rate))
