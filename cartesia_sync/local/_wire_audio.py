"""Decoding the wire encodings the API accepts into the 16-bit samples engines take."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._config import ENCODINGS

__all__ = ["SAMPLE_BYTES", "decoder_for"]

#: Bytes per sample of each wire encoding: the client's own table, so both sides always agree.
SAMPLE_BYTES: dict[str, int] = dict(ENCODINGS)


def _float_to_int16(samples: np.ndarray) -> np.ndarray:
    samples = np.nan_to_num(samples.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign, magnitude, -magnitude).astype(np.int16)


_MULAW = _mulaw_table()
_ALAW = _alaw_table()

_DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    "pcm_s16le": lambda data: np.frombuffer(data, dtype="<i2"),
    "pcm_s32le": lambda data: (np.frombuffer(data, dtype="<i4") >> 16).astype(np.int16),
    "pcm_f16le": lambda data: _float_to_int16(np.frombuffer(data, dtype="<f2")),
    "pcm_f32le": lambda data: _float_to_int16(np.frombuffer(data, dtype="<f4")),
    "pcm_mulaw": lambda data: _MULAW[np.frombuffer(data, dtype=np.uint8)],
    "pcm_alaw": lambda data: _ALAW[np.frombuffer(data, dtype=np.uint8)],
}


def decoder_for(encoding: str) -> Callable[[bytes], np.ndarray]:
    """A function turning whole samples of ``encoding`` into int16 samples.

    :raises KeyError: the encoding is not one the API defines.
    """
    return _DECODERS[encoding]
