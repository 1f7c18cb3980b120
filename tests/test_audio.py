"""Tests for cartesia_sync._audio: converting caller audio to s16le mono at the session rate."""

from __future__ import annotations

import array

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesia_sync._audio import SAMPLE_WIDTH, AudioConverter, duration_of, silence
from cartesia_sync.errors import AudioFormatError

TARGET = 16000


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    """A float64 sine wave."""
    t = np.arange(int(round(rate * seconds))) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def as_int16(data: bytes) -> np.ndarray:
    """Decode s16le bytes."""
    return np.frombuffer(data, dtype="<i2")


def peak_hz(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest FFT bin."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * rate / len(samples))


def split_points(n: int, pieces: int, seed: int) -> list[int]:
    """Sorted, distinct, uneven cut points that split range(n) into *pieces* parts."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(np.arange(1, n), size=pieces - 1, replace=False).tolist())


def reference_resample(x: np.ndarray, in_rate: int) -> np.ndarray:
    """One-shot soxr stream resampling + quantisation, done independently of AudioConverter."""
    stream = soxr.ResampleStream(in_rate, TARGET, 1, dtype="float32", quality="HQ")
    y = stream.resample_chunk(x.astype(np.float32), last=True)
    return np.clip(np.round(y.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)


# --- bytes -------------------------------------------------------------------------------------


def test_constants() -> None:
    assert SAMPLE_WIDTH == 2


def test_bytes_pass_through_bit_exact() -> None:
    rng = np.random.default_rng(0)
    samples = rng.integers(-32768, 32768, size=4001, dtype=np.int16)
    samples[:2] = (-32768, 32767)
    data = samples.astype("<i2").tobytes()
    conv = AudioConverter(TARGET)
    assert conv.convert(data) == data
    assert conv.convert(bytearray(data)) == data
    assert conv.convert(memoryview(data)) == data
    assert conv.convert(data, sample_rate=TARGET, channels=1) == data
    assert conv.flush() == b""


def test_memoryview_with_wide_items_and_non_contiguous() -> None:
    values = array.array("h", [1, -2, 300, -32768])
    conv = AudioConverter(TARGET)
    assert conv.convert(memoryview(values)) == np.array(values, dtype="<i2").tobytes()
    raw = np.arange(8, dtype="<i2").tobytes()
    strided = memoryview(raw)[::2]  # every other byte: 4 bytes, not contiguous
    assert conv.convert(strided) == raw[::2]


def test_odd_byte_count_error_text() -> None:
    with pytest.raises(AudioFormatError) as info:
        AudioConverter(TARGET).convert(b"\x00" * 3201)
    assert str(info.value) == (
        "got 3201 bytes, which is not a whole number of 16-bit mono samples (2 bytes each); "
        "pass s16le PCM, or a numpy array"
    )


def test_stereo_bytes_must_be_whole_frames() -> None:
    with pytest.raises(AudioFormatError, match=r"got 6 bytes, .*16-bit 2-channel frames \(4 bytes each\)"):
        AudioConverter(TARGET).convert(b"\x00" * 6, channels=2)


def test_multichannel_bytes_downmix_by_averaging() -> None:
    left = np.array([1000, -1000, 32767, -32768, 3], dtype=np.int16)
    right = np.array([3000, 1000, 32767, -32768, 0], dtype=np.int16)
    interleaved = np.column_stack([left, right]).astype("<i2").tobytes()
    out = as_int16(AudioConverter(TARGET).convert(interleaved, channels=2))
    expected = np.round((left.astype(np.float64) + right) / 2)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b""), np.zeros(0, np.int16), np.zeros((0, 2))])
def test_empty_input_gives_empty_output(empty: object) -> None:
    conv = AudioConverter(TARGET)
    assert conv.convert(empty) == b""
    assert conv.convert(empty, sample_rate=44100) == b""
    assert conv.flush() == b""


@pytest.mark.parametrize("bad", [[1, 2, 3], "abc", 3.0, None])
def test_unsupported_input_types(bad: object) -> None:
    with pytest.raises(AudioFormatError, match=rf"got audio of type {type(bad).__name__}; expected bytes"):
        AudioConverter(TARGET).convert(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -16000, 16000.0, "16000", True, None])
def test_bad_sample_rates(rate: object) -> None:
    conv = AudioConverter(TARGET)
    if rate is None:
        assert conv.convert(b"\x00\x00", sample_rate=rate) == b"\x00\x00"
        return
    with pytest.raises(AudioFormatError, match="sample_rate must be a positive integer"):
        conv.convert(b"\x00\x00", sample_rate=rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -1, 16000.5])
def test_bad_target_rate(rate: object) -> None:
    with pytest.raises(AudioFormatError, match="target_rate must be a positive integer"):
        AudioConverter(rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("channels", [0, 33, -1, 2.0])
def test_bad_channel_counts_for_bytes(channels: object) -> None:
    with pytest.raises(AudioFormatError, match="channels must be an integer from 1 to 32"):
        AudioConverter(TARGET).convert(b"\x00" * 8, channels=channels)  # type: ignore[arg-type]


# --- arrays --------------------------------------------------------------------------------------


def test_int16_array_bit_exact_and_little_endian() -> None:
    samples = np.array([1, -2, 32767, -32768, 256], dtype=np.int16)
    out = AudioConverter(TARGET).convert(samples)
    assert out[:4] == b"\x01\x00\xfe\xff"
    np.testing.assert_array_equal(as_int16(out), samples)
    assert AudioConverter(TARGET).convert(samples.reshape(-1, 1)) == out
    assert AudioConverter(TARGET).convert(np.repeat(samples, 2)[::2]) == out  # non-contiguous view


def test_big_endian_int16_array() -> None:
    samples = np.array([1, -2, 32767, -32768, 256], dtype=np.int16)
    out = AudioConverter(TARGET).convert(samples.astype(">i2"))
    assert out == samples.astype("<i2").tobytes()


def test_int32_full_scale_maps_to_int16() -> None:
    base = np.array([0, 1, -1, 12345, 32767, -32768], dtype=np.int32)
    out = as_int16(AudioConverter(TARGET).convert(base << 16))
    np.testing.assert_array_equal(out, base)
    edges = np.array([2**31 - 1, -(2**31), (5 << 16) + 0x7FFF, (5 << 16) + 0x8000], dtype=np.int32)
    out = as_int16(AudioConverter(TARGET).convert(edges.astype(">i4")))
    np.testing.assert_array_equal(out, [32767, -32768, 5, 6])


def test_uint8_is_offset_binary() -> None:
    out = as_int16(AudioConverter(TARGET).convert(np.array([0, 128, 255, 192], dtype=np.uint8)))
    np.testing.assert_array_equal(out, [-32768, 0, 32512, 16384])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f8"])
def test_float_arrays_scale_and_clip(dtype: object) -> None:
    values = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -3.0, 1e9, 2.0**-16], dtype=dtype)
    out = as_int16(AudioConverter(TARGET).convert(values))
    np.testing.assert_array_equal(out, [0, 16384, -16384, 32767, -32768, 32767, -32768, 32767, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_rejected(dtype: object, bad_value: float) -> None:
    values = np.zeros(20, dtype=dtype)
    values[7] = bad_value
    values[12] = np.nan
    with pytest.raises(AudioFormatError, match=r"contains 2 non-finite sample\(s\).*first at index 7"):
        AudioConverter(TARGET).convert(values)


def test_non_finite_in_two_dimensional_array_names_frame_and_channel() -> None:
    values = np.zeros((10, 2), dtype=np.float32)
    values[3, 1] = np.inf
    with pytest.raises(AudioFormatError, match=r"1 non-finite sample\(s\).*frame 3, channel 1"):
        AudioConverter(TARGET).convert(values)


@pytest.mark.parametrize("dtype", [bool, np.complex64, np.int64, object, np.float16, np.uint16, np.int8])
@pytest.mark.parametrize("length", [0, 4])
def test_unsupported_dtypes(dtype: object, length: int) -> None:
    arr = np.zeros(length, dtype=dtype)
    with pytest.raises(AudioFormatError) as info:
        AudioConverter(TARGET).convert(arr)
    assert f"dtype {arr.dtype}" in str(info.value)
    assert "expected int16, int32, uint8, float32 or float64" in str(info.value)


@pytest.mark.parametrize("shape", [(10, 2, 2), (2, 48000), (10, 0), (5, 33), ()])
def test_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(AudioFormatError) as info:
        AudioConverter(TARGET).convert(np.zeros(shape, dtype=np.float32))
    message = str(info.value)
    assert str(shape) in message
    assert "expected (frames,) or (frames, channels); for channel-first arrays pass arr.T" in message


def test_channel_first_hint_works() -> None:
    stereo = np.zeros((2, 48000), dtype=np.float32)
    assert len(AudioConverter(TARGET).convert(stereo.T)) == 48000 * SAMPLE_WIDTH


def test_thirty_two_channels_is_the_limit() -> None:
    arr = np.full((4, 32), 0.25, dtype=np.float32)
    np.testing.assert_array_equal(as_int16(AudioConverter(TARGET).convert(arr)), [8192] * 4)


@pytest.mark.parametrize(("shape", "channels"), [((100, 2), 1), ((100,), 2), ((100, 1), 3)])
def test_channels_must_match_the_array(shape: tuple[int, ...], channels: int) -> None:
    with pytest.raises(AudioFormatError, match=rf"channels={channels} was given, but the array of shape"):
        AudioConverter(TARGET).convert(np.zeros(shape, dtype=np.int16), channels=channels)


def test_matching_channels_are_accepted() -> None:
    conv = AudioConverter(TARGET)
    assert len(conv.convert(np.zeros((100, 2), np.int16), channels=2)) == 200
    assert len(conv.convert(np.zeros(100, np.int16), channels=1)) == 200
    assert len(conv.convert(np.zeros((100, 1), np.int16), channels=1)) == 200


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.float32])
def test_array_downmix_averages_channels(dtype: type) -> None:
    conv = AudioConverter(TARGET)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if dtype is np.uint8:
        stereo = np.array([[255, 1], [192, 192], [128, 0]], dtype=dtype)
        expected = [0, 16384, -16384]
    elif info is not None:
        scale = 1 if dtype is np.int16 else 1 << 16
        stereo = np.array([[1000, 3000], [-32768, -32768], [32767, -32767]], dtype=np.int64) * scale
        stereo = stereo.astype(dtype)
        expected = [2000, -32768, 0]
    else:
        stereo = np.array([[0.5, -0.5], [0.25, 0.75], [2.0, 2.0]], dtype=dtype)
        expected = [0, 16384, 32767]
    np.testing.assert_array_equal(as_int16(conv.convert(stereo)), expected)


# --- resampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_rate", [44100, 48000, 8000, 22050])
def test_resampled_length_and_pitch(in_rate: int) -> None:
    tone = sine(440, in_rate, 1.0).astype(np.float32)
    conv = AudioConverter(TARGET)
    body = conv.convert(tone, sample_rate=in_rate)
    tail = conv.flush()
    assert len(tail) > 0
    out = as_int16(body + tail)
    assert abs(len(out) - TARGET) <= 3
    assert abs(peak_hz(out, TARGET) - 440) < 2
    rms = np.sqrt(np.mean((out[2000:-2000] / 32768.0) ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resampling_filters_out_frequencies_above_the_new_nyquist() -> None:
    # a 10 kHz tone at 48 kHz cannot exist at 16 kHz; nearest-neighbour would alias it to 6 kHz
    tone = sine(10000, 48000, 1.0, amp=0.8)
    conv = AudioConverter(TARGET)
    out = as_int16(conv.convert(tone, sample_rate=48000) + conv.flush())
    assert np.max(np.abs(out[1000:-1000])) < 0.01 * 32768


@pytest.mark.parametrize("in_rate", [44100, 48000])
def test_chunked_conversion_matches_one_shot(in_rate: int) -> None:
    signal = (sine(440, in_rate, 1.0) + sine(3000, in_rate, 1.0, amp=0.2)).astype(np.float32)
    one = AudioConverter(TARGET)
    whole = as_int16(one.convert(signal, sample_rate=in_rate) + one.flush())
    chunked = AudioConverter(TARGET)
    pieces_in = np.split(signal, split_points(len(signal), 37, 1))
    assert len(pieces_in) == 37
    parts = [chunked.convert(piece, sample_rate=in_rate) for piece in pieces_in]
    pieces = as_int16(b"".join(parts) + chunked.flush())
    assert len(pieces) == len(whole)
    assert np.max(np.abs(pieces.astype(np.int32) - whole)) <= 1
    reference = reference_resample(signal, in_rate)
    assert len(reference) == len(whole)
    assert np.max(np.abs(reference.astype(np.int32) - whole)) <= 1


def test_chunked_int16_bytes_resampling_matches_one_shot() -> None:
    samples = (sine(440, 44100, 0.5) * 32767).astype(np.int16)
    data = samples.astype("<i2").tobytes()
    one = AudioConverter(TARGET)
    whole = one.convert(data, sample_rate=44100) + one.flush()
    chunked = AudioConverter(TARGET)
    cuts = [0, *(2 * p for p in split_points(len(samples), 37, 2)), len(data)]
    parts = [chunked.convert(data[a:b], sample_rate=44100) for a, b in zip(cuts, cuts[1:], strict=False)]
    out = as_int16(b"".join(parts) + chunked.flush())
    assert len(out) == len(whole) // 2
    assert np.max(np.abs(out.astype(np.int32) - as_int16(whole))) <= 1


def test_rate_change_flushes_the_previous_tail() -> None:
    first = sine(440, 44100, 0.3)
    second = sine(440, 48000, 0.3)
    ref = AudioConverter(TARGET)
    ref_body = ref.convert(first, sample_rate=44100)
    ref_tail = ref.flush()
    assert len(ref_tail) > 0

    conv = AudioConverter(TARGET)
    assert conv.convert(first, sample_rate=44100) == ref_body
    out = conv.convert(second, sample_rate=48000)
    assert out.startswith(ref_tail)
    total = len(ref_body) + len(out) + len(conv.flush())
    assert abs(total // SAMPLE_WIDTH - 2 * 4800) <= 6


def test_rate_change_back_to_target_flushes_then_passes_through() -> None:
    conv = AudioConverter(TARGET)
    conv.convert(sine(440, 44100, 0.2), sample_rate=44100)
    exact = np.arange(-50, 50, dtype=np.int16)
    out = conv.convert(exact)
    assert len(out) > exact.nbytes
    assert out.endswith(exact.astype("<i2").tobytes())
    assert conv.flush() == b""


def test_flush_resets_the_stream() -> None:
    tone = sine(440, 48000, 0.25)
    conv = AudioConverter(TARGET)
    first = conv.convert(tone, sample_rate=48000) + conv.flush()
    assert conv.flush() == b""
    second = conv.convert(tone, sample_rate=48000) + conv.flush()
    assert first == second


def test_upsampling_bytes() -> None:
    samples = (sine(300, 8000, 0.5) * 20000).astype("<i2")
    conv = AudioConverter(TARGET)
    out = as_int16(conv.convert(samples.tobytes(), sample_rate=8000) + conv.flush())
    assert abs(len(out) - 8000) <= 3
    assert abs(peak_hz(out, TARGET) - 300) < 3


# --- helpers ---------------------------------------------------------------------------------------


def test_duration_of() -> None:
    assert duration_of(32000, 16000) == 1.0
    assert duration_of(0, 16000) == 0.0
    assert duration_of(3, 16000) == 1 / 16000
    assert duration_of(4800, 24000) == pytest.approx(0.1)
    with pytest.raises(AudioFormatError, match="nbytes must be a non-negative integer"):
        duration_of(-2, 16000)
    with pytest.raises(AudioFormatError, match="sample_rate must be a positive integer"):
        duration_of(2, 0)


def test_silence() -> None:
    assert silence(0.5, 16000) == bytes(16000)
    assert silence(0, 8000) == b""
    assert silence(0.0001, 16000) == bytes(4)  # 1.6 samples round to 2
    assert duration_of(len(silence(1.25, 16000)), 16000) == 1.25
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(AudioFormatError, match="seconds must be a finite number >= 0"):
            silence(bad, 16000)
    with pytest.raises(AudioFormatError):
        silence(1.0, -5)


# --- properties --------------------------------------------------------------------------------


_PROPERTY_SIGNAL = (sine(440, 44100, 0.25) + sine(5000, 44100, 0.25, amp=0.3)).astype(np.float32)
_PROPERTY_ONE_SHOT = reference_resample(_PROPERTY_SIGNAL, 44100)


@settings(max_examples=25, deadline=None, database=None)
@given(st.lists(st.integers(min_value=0, max_value=len(_PROPERTY_SIGNAL)), max_size=30))
def test_property_any_split_resamples_like_one_shot(cuts: list[int]) -> None:
    conv = AudioConverter(TARGET)
    pieces = np.split(_PROPERTY_SIGNAL, sorted(cuts))
    out = as_int16(b"".join(conv.convert(p, sample_rate=44100) for p in pieces) + conv.flush())
    assert len(out) == len(_PROPERTY_ONE_SHOT)
    assert np.max(np.abs(out.astype(np.int32) - _PROPERTY_ONE_SHOT)) <= 1


@settings(max_examples=25, deadline=None, database=None)
@given(st.binary(max_size=400).filter(lambda b: len(b) % 2 == 0), st.lists(st.integers(0, 200), max_size=10))
def test_property_pass_through_split_is_bit_exact(data: bytes, cuts: list[int]) -> None:
    conv = AudioConverter(TARGET)
    bounds = [0, *sorted(2 * c for c in cuts if 2 * c <= len(data)), len(data)]
    assert b"".join(conv.convert(data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)) == data
