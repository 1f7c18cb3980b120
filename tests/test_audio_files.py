"""Tests for cartesia_sync._audio_files: WAV parsing, soundfile formats, block streaming, errors."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cartesia_sync._audio_files import AudioFileInfo, AudioFileReader, open_audio_file
from cartesia_sync.errors import AudioFormatError

RATE = 22050
FRAMES = 1000
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def source(frames: int = FRAMES, channels: int = 2) -> np.ndarray:
    """A (frames, channels) float64 signal in -0.9..0.9: a 440 Hz sine with a phase per channel."""
    t = np.arange(frames)[:, None] / RATE
    return 0.9 * np.sin(2 * np.pi * 440 * t + np.arange(channels)[None, :])


def encode(x: np.ndarray, tag: int, bits: int) -> bytes:
    """Encode float samples as little-endian WAV sample data."""
    if tag == 3:
        return x.astype("<f4" if bits == 32 else "<f8").tobytes()
    if bits == 8:
        return np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    ints = np.clip(np.round(x * 2.0 ** (bits - 1)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1).astype("<i4")
    if bits == 24:
        return ints.reshape(-1, 1).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return ints.astype("<i2").tobytes() if bits == 16 else ints.tobytes()


def chunk(chunk_id: bytes, payload: bytes, size: int | None = None) -> bytes:
    """One RIFF chunk, with its pad byte when the payload is odd-sized."""
    declared = len(payload) if size is None else size
    return chunk_id + struct.pack("<I", declared) + payload + (b"\x00" if len(payload) % 2 else b"")


def fmt_payload(
    tag: int, channels: int, rate: int, bits: int, *, extensible: bool = False, block_align: int | None = None
) -> bytes:
    """A 'fmt ' chunk payload; EXTENSIBLE puts *tag* in the subformat GUID."""
    align = channels * bits // 8 if block_align is None else block_align
    head = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align, align, bits)
    if not extensible:
        return head
    return head + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + _GUID_TAIL


def write_wav(
    path: Path,
    data: bytes,
    *,
    tag: int = 1,
    channels: int = 2,
    bits: int = 16,
    rate: int = RATE,
    extensible: bool = False,
    before_data: bytes = b"",
    before_fmt: bytes = b"",
    data_size: int | None = None,
    riff_size: int | None = None,
    block_align: int | None = None,
    fmt: bytes | None = None,
    trailer: bytes = b"",
) -> Path:
    """Write a WAV with any header we like."""
    fmt_chunk = chunk(
        b"fmt ",
        fmt
        if fmt is not None
        else fmt_payload(tag, channels, rate, bits, extensible=extensible, block_align=block_align),
    )
    data_chunk = b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    body = b"WAVE" + before_fmt + fmt_chunk + before_data + data_chunk + trailer
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body)
    return path


def read_all(path: Path, block_frames: int = 256) -> tuple[AudioFileInfo, np.ndarray, list[int]]:
    """Open *path*, read every block, return the info, the concatenated audio and the block sizes."""
    with open_audio_file(path) as reader:
        blocks = list(reader.blocks(block_frames))
        info = reader.info
    return info, np.concatenate(blocks), [len(b) for b in blocks]


# --- WAV variants --------------------------------------------------------------------------------

VARIANTS = [(1, 8, 1 / 128), (1, 16, 0), (1, 24, 2.0**-23), (1, 32, 2.0**-24), (3, 32, 1e-7), (3, 64, 1e-7)]


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
@pytest.mark.parametrize(("tag", "bits", "tolerance"), VARIANTS, ids=lambda v: str(v))
def test_wav_variants_decode_to_the_source(
    tmp_path: Path, tag: int, bits: int, tolerance: float, extensible: bool
) -> None:
    x = source()
    path = write_wav(tmp_path / "x.wav", encode(x, tag, bits), tag=tag, bits=bits, extensible=extensible)
    info, audio, sizes = read_all(path)
    kind = "PCM" if tag == 1 else "float"
    assert info == AudioFileInfo(str(path), f"WAV {kind} {bits}-bit", RATE, 2, FRAMES)
    assert info.duration == pytest.approx(FRAMES / RATE)
    assert sizes == [256, 256, 256, 232]
    assert audio.shape == (FRAMES, 2)
    if bits == 16 and tag == 1:
        assert audio.dtype == np.int16
        np.testing.assert_array_equal(audio, np.round(x * 32768).astype(np.int16))
    else:
        assert audio.dtype == np.float32
        np.testing.assert_allclose(audio, x, rtol=0, atol=tolerance / 2 + 1e-7)
    # libsndfile is an independent decoder of the same bytes
    theirs, their_rate = soundfile.read(path, dtype="float32", always_2d=True)
    assert their_rate == RATE
    np.testing.assert_allclose(
        np.asarray(audio, np.float32) / (32768 if audio.dtype == np.int16 else 1), theirs, rtol=0, atol=1e-6
    )


def test_mono_wav_and_block_sizes(tmp_path: Path) -> None:
    x = source(frames=1001, channels=1)
    path = write_wav(tmp_path / "m.wav", encode(x, 1, 16), channels=1)
    info, audio, sizes = read_all(path, block_frames=100)
    assert (info.channels, info.frames) == (1, 1001)
    assert sizes == [100] * 10 + [1]
    assert audio.shape == (1001, 1)
    _, _, sizes = read_all(path, block_frames=5000)
    assert sizes == [1001]


def test_odd_sized_chunks_with_pad_bytes(tmp_path: Path) -> None:
    x = source()
    extra = chunk(b"LIST", b"INFOabcde") + chunk(b"junk", b"x")
    path = write_wav(
        tmp_path / "x.wav",
        encode(x, 1, 24),
        bits=24,
        before_fmt=chunk(b"bext", b"abc"),
        before_data=extra,
        trailer=chunk(b"id3 ", b"tag"),
    )
    info, audio, _ = read_all(path)
    assert info.frames == FRAMES
    np.testing.assert_allclose(audio, x, atol=2.0**-23)


def test_fmt_after_data(tmp_path: Path) -> None:
    x = source()
    data = encode(x, 1, 16)
    body = b"WAVE" + chunk(b"data", data) + chunk(b"fmt ", fmt_payload(1, 2, RATE, 16))
    path = tmp_path / "late.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    _, audio, _ = read_all(path)
    np.testing.assert_array_equal(audio, np.round(x * 32768).astype(np.int16))


def test_streamed_wav_with_unknown_sizes_and_partial_frame(tmp_path: Path) -> None:
    x = source()
    data = encode(x, 1, 16) + b"\x01\x02\x03"  # a trailing partial stereo frame
    path = write_wav(tmp_path / "s.wav", data, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF)
    info, audio, sizes = read_all(path, block_frames=300)
    assert info.frames == FRAMES
    assert sizes == [300, 300, 300, 100]
    np.testing.assert_array_equal(audio, np.round(x * 32768).astype(np.int16))


def test_data_chunk_larger_than_the_file(tmp_path: Path) -> None:
    x = source()
    path = write_wav(tmp_path / "big.wav", encode(x, 3, 32), tag=3, bits=32, data_size=10 * FRAMES * 8)
    info, audio, _ = read_all(path)
    assert info.frames == FRAMES
    np.testing.assert_array_equal(audio, x.astype(np.float32))


def test_rf64_written_by_libsndfile(tmp_path: Path) -> None:
    x = source()
    path = tmp_path / "x.rf64"
    soundfile.write(path, x, RATE, format="RF64", subtype="PCM_24")
    assert path.read_bytes()[:4] == b"RF64"
    info, audio, _ = read_all(path)
    assert (info.format, info.frames, info.channels) == ("RF64 PCM 24-bit", FRAMES, 2)
    np.testing.assert_allclose(audio, x, atol=2.0**-23)


def test_rf64_ds64_size_is_honoured(tmp_path: Path) -> None:
    x = source()
    data = encode(x, 1, 16)
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 0, len(data), FRAMES, 0))
    body = (
        b"WAVE"
        + ds64
        + chunk(b"fmt ", fmt_payload(1, 2, RATE, 16))
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
        + data
        + chunk(b"LIST", b"INFO" + b"z" * 400)
    )
    path = tmp_path / "x.wav"
    path.write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body)
    info, audio, _ = read_all(path)
    assert info.frames == FRAMES
    np.testing.assert_array_equal(audio, np.round(x * 32768).astype(np.int16))


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_interleaved_iterators_and_repeat_reads(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"x.{suffix}"
    soundfile.write(path, source(), RATE, subtype="PCM_16")
    with open_audio_file(path) as reader:
        first, second = reader.blocks(100), reader.blocks(100)
        pairs = list(zip(first, second, strict=False))
        assert len(pairs) == 10
        for a, b in pairs:
            np.testing.assert_array_equal(a, b)
        assert sum(len(b) for b in reader.blocks(333)) == FRAMES


def test_reader_closes(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", encode(source(), 1, 16))
    with open_audio_file(os.fspath(path)) as reader:
        assert isinstance(reader, AudioFileReader)
        assert not reader.closed
    assert reader.closed
    with pytest.raises(ValueError, match="is closed; open the file again"):
        reader.blocks(10)
    reader.close()  # idempotent


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_block_frames_must_be_positive(tmp_path: Path, bad: object) -> None:
    path = write_wav(tmp_path / "x.wav", encode(source(), 1, 16))
    with open_audio_file(path) as reader, pytest.raises(ValueError, match="block_frames must be a positive"):
        reader.blocks(bad)  # type: ignore[arg-type]


# --- soundfile formats ---------------------------------------------------------------------------


def test_flac_through_soundfile(tmp_path: Path) -> None:
    x = source()
    ints = np.round(x * 32768).astype(np.int16)
    path = tmp_path / "x.flac"
    soundfile.write(path, ints, RATE, subtype="PCM_16")
    info, audio, sizes = read_all(path)
    assert info.format.startswith("FLAC")
    assert (info.sample_rate, info.channels, info.frames) == (RATE, 2, FRAMES)
    assert sizes == [256, 256, 256, 232]
    assert audio.dtype == np.int16
    np.testing.assert_array_equal(audio, ints)


def test_flac_24_bit_is_float(tmp_path: Path) -> None:
    x = source()
    path = tmp_path / "x.flac"
    soundfile.write(path, x, RATE, subtype="PCM_24")
    _, audio, _ = read_all(path)
    assert audio.dtype == np.float32
    np.testing.assert_allclose(audio, x, atol=2.0**-22)


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix"),
    [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"), ("AIFF", "PCM_16", "aiff")],
)
def test_other_formats_through_soundfile(tmp_path: Path, fmt: str, subtype: str, suffix: str) -> None:
    x = source(frames=RATE, channels=1)
    path = tmp_path / f"x.{suffix}"
    soundfile.write(path, x, RATE, format=fmt, subtype=subtype)
    info, audio, _ = read_all(path, block_frames=4096)
    assert info.format == f"{fmt} {subtype}"
    assert info.sample_rate == RATE and info.channels == 1
    assert abs(len(audio) - RATE) <= 2048  # lossy codecs may pad
    assert len(audio) == info.frames
    spectrum = np.abs(np.fft.rfft(audio[:, 0].astype(np.float64) * np.hanning(len(audio))))
    assert abs(np.argmax(spectrum) * RATE / len(audio) - 440) < 3


# --- errors --------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioFormatError) as info:
        open_audio_file(path)
    assert str(info.value) == f"{str(path)!r} is empty (0 bytes); expected an audio file"


def test_zero_frame_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", b"")
    with pytest.raises(AudioFormatError) as info:
        open_audio_file(path)
    assert str(info.value) == f"{str(path)!r} contains no audio (0 frames)"
    path = write_wav(tmp_path / "y.wav", b"\x00\x00")  # half a stereo frame
    with pytest.raises(AudioFormatError, match=r"contains no audio \(0 frames\)"):
        open_audio_file(path)


def test_zero_frame_aiff(tmp_path: Path) -> None:
    path = tmp_path / "x.aiff"
    soundfile.write(path, np.zeros((0, 1), np.int16), RATE, format="AIFF")
    with pytest.raises(AudioFormatError, match=r"x.aiff' contains no audio \(0 frames\)"):
        open_audio_file(path)


@pytest.mark.parametrize(
    ("cut", "pattern"),
    [
        (10, r"is truncated: 10 bytes; a WAV header needs at least 12"),
        (24, r"truncated or damaged: its 'fmt ' chunk declares 16 bytes, 4 are present"),
        (36, r"has no 'data' chunk \(chunks found: \['fmt '\]\)"),
    ],
)
def test_truncated_headers(tmp_path: Path, cut: int, pattern: str) -> None:
    full = write_wav(tmp_path / "full.wav", encode(source(), 1, 16)).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(full[:cut])
    with pytest.raises(AudioFormatError, match=pattern):
        open_audio_file(path)


def test_random_bytes_are_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x13\x37" + np.random.default_rng(7).bytes(5000))
    with pytest.raises(AudioFormatError) as info:
        open_audio_file(path)
    message = str(info.value)
    assert message.startswith(f"could not read {str(path)!r} as audio: ")
    assert message.endswith("; supported: WAV (PCM 8/16/24/32-bit, float 32/64-bit), FLAC, OGG, MP3, AIFF")
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("tag", "bits", "extensible", "label"),
    [
        (2, 4, False, "2 (Microsoft ADPCM)"),
        (7, 8, False, "7 (mu-law)"),
        (85, 16, False, "85 (MP3)"),
        (6, 8, True, "6 (A-law)"),
        (0x1234, 16, False, "4660"),
    ],
)
def test_unsupported_format_tags(tmp_path: Path, tag: int, bits: int, extensible: bool, label: str) -> None:
    path = write_wav(tmp_path / "x.wav", b"\x00" * 64, tag=tag, bits=bits, channels=1, extensible=extensible)
    with pytest.raises(AudioFormatError) as info:
        open_audio_file(path)
    assert f"uses WAV format tag {label}, which is not supported" in str(info.value)
    assert "supported tags: 1 (PCM), 3 (IEEE float), 0xFFFE (EXTENSIBLE" in str(info.value)


@pytest.mark.parametrize(
    ("tag", "bits", "pattern"),
    [
        (1, 12, r"12-bit PCM, which is not supported; expected PCM 8/16/24/32-bit"),
        (3, 16, r"16-bit float, .*expected float 32/64-bit"),
    ],
)
def test_unsupported_bit_depths(tmp_path: Path, tag: int, bits: int, pattern: str) -> None:
    path = write_wav(tmp_path / "x.wav", b"\x00" * 64, tag=tag, bits=bits, channels=1, block_align=2)
    with pytest.raises(AudioFormatError, match=pattern):
        open_audio_file(path)


def test_inconsistent_block_align(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", b"\x00" * 64, bits=16, channels=2, block_align=3)
    with pytest.raises(AudioFormatError, match=r"block_align 3, but 2 channel\(s\) of 16-bit samples need 4"):
        open_audio_file(path)


@pytest.mark.parametrize(("channels", "rate"), [(0, RATE), (1, 0)])
def test_zero_channels_or_rate(tmp_path: Path, channels: int, rate: int) -> None:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, 0, channels * 2, 16)
    path = write_wav(tmp_path / "x.wav", b"\x00" * 64, fmt=fmt)
    with pytest.raises(AudioFormatError, match=rf"declares {channels} channel\(s\) at {rate} Hz; expected"):
        open_audio_file(path)


def test_extensible_with_short_fmt(tmp_path: Path) -> None:
    short_fmt = struct.pack("<HHIIHH", 0xFFFE, 1, RATE, RATE * 2, 2, 16)
    path = write_wav(tmp_path / "x.wav", b"\x00" * 64, fmt=short_fmt)
    with pytest.raises(AudioFormatError, match="WAVE_FORMAT_EXTENSIBLE but its 'fmt ' chunk has 16 bytes"):
        open_audio_file(path)


def test_missing_chunks(tmp_path: Path) -> None:
    no_fmt = tmp_path / "nofmt.wav"
    body = b"WAVE" + chunk(b"LIST", b"INFO") + chunk(b"data", b"\x00" * 64)
    no_fmt.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFormatError, match=r"has no 'fmt ' chunk \(chunks found: \['LIST', 'data'\]\)"):
        open_audio_file(no_fmt)
    no_data = tmp_path / "nodata.wav"
    body = b"WAVE" + chunk(b"fmt ", fmt_payload(1, 1, RATE, 16)) + chunk(b"LIST", b"INFOxyz")
    no_data.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFormatError, match=r"has no 'data' chunk \(chunks found: \['fmt ', 'LIST'\]\)"):
        open_audio_file(no_data)


def test_riff_that_is_not_wave(tmp_path: Path) -> None:
    path = tmp_path / "x.avi"
    path.write_bytes(b"RIFF" + struct.pack("<I", 100) + b"AVI " + b"\x00" * 100)
    with pytest.raises(AudioFormatError, match=r"is a RIFF file of type 'AVI ', not WAVE"):
        open_audio_file(path)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_audio_file(tmp_path / "nope.wav")
    with pytest.raises(IsADirectoryError):
        open_audio_file(tmp_path)


def test_importing_does_not_load_soundfile() -> None:
    code = "import sys, cartesia_sync._audio_files; sys.exit('soundfile' in sys.modules)"
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or "soundfile was imported"
