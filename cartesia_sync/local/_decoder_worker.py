"""The recogniser behind the pocketsphinx engine, and the worker process that hosts it.

:class:`StreamRecognizer` turns one stream's 16 kHz mono s16le audio into
:class:`~cartesia_sync.local._engine.Recognition` results. It runs either in the
caller's process (``PocketSphinxEngine(workers=0)``) or inside a worker process
started by :func:`main`, which hosts the recognisers of every stream pinned to
it and answers requests, one at a time, on a connection it gets as a file
descriptor. The worker imports nothing from the caller's ``__main__``.

Per stream, audio goes through these steps, in 30 ms frames:

1. **Endpointing.** pocketsphinx's ``Vad`` classifies each frame; a frame whose
   RMS is below ``min_volume`` counts as silence. An utterance starts when
   ``start_ratio`` of the last ``start_secs`` are speech, and the decoder also
   gets up to ``preroll_secs`` of audio before that. It ends when at most
   ``1 - end_ratio`` of the last ``max_silence_duration_secs`` (default
   ``silence_secs``) are speech, or after ``max_utterance_secs``.
2. **Pre-processing** (only of audio the decoder sees): automatic gain towards
   ``target_level`` of full scale, from a running estimate of the speech level,
   then a seeded white-noise floor ``noise_db`` below that level. Synthetic
   speech has digital silence, which the acoustic model was never trained on.
3. **Decoding** with the model inside the pocketsphinx wheel and a cepstral-mean
   prior (``cmninit``) that matches the normalised level, so the first
   utterance of a stream is decoded as well as the later ones.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._events import Word
from ._engine import ENGINE_SAMPLE_RATE, Recognition, StreamOptions, words_between

__all__ = ["RecognizerSettings", "StreamRecognizer", "DecoderCache", "main"]

FRAME_SAMPLES = 480  # 30 ms at 16 kHz: the frame of pocketsphinx's Vad
FRAME_BYTES = FRAME_SAMPLES * 2
FRAME_SECS = FRAME_SAMPLES / ENGINE_SAMPLE_RATE
_DECODER_FRAME_SECS = 0.01  # pocketsphinx's frame rate is 100 per second
_FULL_SCALE = 32768.0

#: The cepstral mean of speech normalised to ``target_level`` 0.06 with a -35 dB
#: noise floor: the average of espeak-ng voices and LibriVox recordings.
DEFAULT_CMNINIT = "53.71,0.18,-1.10,14.06,-7.58,-0.48,-4.67,-10.10,-1.96,-3.88,1.56,-1.54,-2.57"


@dataclass(frozen=True)
class RecognizerSettings:
    """Engine-wide recognition settings; the defaults are the tuned ones.

    :ivar target_level: speech RMS (fraction of full scale) the gain aims at;
        ``None`` turns the automatic gain off.
    :ivar noise_db: white-noise floor added to decoded audio, in dB relative to
        the speech level; ``None`` adds none.
    :ivar cmninit: initial cepstral mean for each stream; ``None`` keeps the model's.
    :ivar decoder_options: extra ``pocketsphinx.Decoder`` keyword arguments.
    :ivar vad_mode: aggressiveness of pocketsphinx's ``Vad`` (0 loosest .. 3).
    :ivar silence_secs: silence that ends an utterance when the stream does not
        say (``StreamOptions.max_silence_duration_secs``).
    :ivar interim_secs: at most one interim result per this much new audio.
    :ivar seed: seed of the noise floor, so results are reproducible.
    """

    target_level: float | None = 0.06
    noise_db: float | None = -35.0
    cmninit: str | None = DEFAULT_CMNINIT
    decoder_options: tuple[tuple[str, Any], ...] = (("lw", 5.5),)
    vad_mode: int = 0
    start_secs: float = 0.3
    start_ratio: float = 0.6
    preroll_secs: float = 0.45
    silence_secs: float = 0.6
    end_ratio: float = 0.9
    max_utterance_secs: float = 30.0
    interim_secs: float = 0.1
    seed: int = 0
    idle_decoders: int = 2
    max_gain: float = 100.0

    @classmethod
    def untuned(cls) -> RecognizerSettings:
        """pocketsphinx's own defaults: no gain, no noise floor, the model's CMN prior."""
        return cls(target_level=None, noise_db=None, cmninit=None, decoder_options=())


class DecoderCache:
    """Builds pocketsphinx decoders and keeps a few idle ones for the next stream.

    A decoder takes about 0.25 s to build and 90 MB of memory; reusing one only
    needs its cepstral mean reset. Not thread-safe: callers serialise.
    """

    def __init__(self, settings: RecognizerSettings) -> None:
        self.settings = settings
        self._idle: list[Any] = []

    def take(self) -> Any:
        decoder = self._idle.pop() if self._idle else self._build()
        if self.settings.cmninit:
            decoder.set_cmn(self.settings.cmninit)
        with warnings.catch_warnings():  # "deprecated", but it still resets the noise statistics
            warnings.simplefilter("ignore", DeprecationWarning)
            decoder.start_stream()
        return decoder

    def give_back(self, decoder: Any) -> None:
        if len(self._idle) < self.settings.idle_decoders:
            self._idle.append(decoder)

    def clear(self) -> None:
        self._idle.clear()

    def _build(self) -> Any:
        import pocketsphinx

        options: dict[str, Any] = {"loglevel": "FATAL"}
        options.update(dict(self.settings.decoder_options))
        if self.settings.cmninit:
            options.setdefault("cmninit", self.settings.cmninit)
        return pocketsphinx.Decoder(**options)


@dataclass
class _Frame:
    start: int  # first sample, counted from the first audio of the stream
    pcm: bytes
    speech: bool
    power: float  # mean square, fraction of full scale squared


@dataclass
class _Utterance:
    start: int  # first sample given to the decoder
    end: int  # sample after the last one given to the decoder
    last_interim: str = ""
    last_raw: str = ""
    since_interim: int = 0  # samples decoded since the last interim check
    recent: deque[bool] = field(default_factory=deque)


def _clean_words(decoder: Any, offset_secs: float) -> tuple[Word, ...]:
    words = []
    for seg in decoder.seg():
        token = seg.word
        if not token or token.startswith(("<", "[", "+")):
            continue  # <s>, </s>, <sil>, [NOISE], ++GARBAGE++ fillers
        paren = token.find("(")
        if paren > 0:
            token = token[:paren]  # "the(2)": an alternative pronunciation
        start = offset_secs + seg.start_frame * _DECODER_FRAME_SECS
        end = offset_secs + (seg.end_frame + 1) * _DECODER_FRAME_SECS
        words.append(Word(token.lower(), round(start, 3), round(end, 3)))
    return tuple(words)


class StreamRecognizer:
    """One stream's endpointing, pre-processing and decoding (see the module docstring).

    :param decoder: a ``pocketsphinx.Decoder`` from :class:`DecoderCache`,
        owned by this recogniser until :meth:`close` returns it.
    """

    def __init__(self, decoder: Any, options: StreamOptions, settings: RecognizerSettings) -> None:
        import pocketsphinx

        self.settings = s = settings
        self.decoder = decoder
        self._vad = pocketsphinx.Vad(s.vad_mode)
        silence = options.max_silence_duration_secs
        silence = s.silence_secs if silence is None else float(silence)
        self._min_power = float(options.min_volume or 0.0) ** 2
        self._start_frames = max(1, round(s.start_secs / FRAME_SECS))
        self._start_needed = max(1, math.ceil(s.start_ratio * self._start_frames))
        self._end_frames = max(3, round(silence / FRAME_SECS))
        self._end_allowed = int((1.0 - s.end_ratio) * self._end_frames)
        self._max_utt = int(s.max_utterance_secs * ENGINE_SAMPLE_RATE)
        self._interim_samples = int(s.interim_secs * ENGINE_SAMPLE_RATE)
        self._ring: deque[_Frame] = deque(maxlen=max(self._start_frames, round(s.preroll_secs / FRAME_SECS)))
        self._recent: deque[bool] = deque(maxlen=self._start_frames)
        self._pending = b""
        self._position = 0  # samples taken into frames so far
        self._utt: _Utterance | None = None
        self._to_decode: list[bytes] = []
        self._level_power: float | None = None
        self._rng = np.random.default_rng(s.seed)
        self._noise_sigma = 0.0
        if s.noise_db is not None:
            self._noise_sigma = (s.target_level or 0.06) * _FULL_SCALE * 10 ** (s.noise_db / 20)

    # -- the three calls of EngineStream --------------------------------------------------

    def feed(self, audio: bytes) -> list[Recognition]:
        data = self._pending + bytes(audio)
        whole = len(data) // FRAME_BYTES * FRAME_BYTES
        self._pending = data[whole:]
        results: list[Recognition] = []
        if not whole:
            return results
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64).reshape(-1, FRAME_SAMPLES)
        powers = np.mean(samples * samples, axis=1) / (_FULL_SCALE * _FULL_SCALE)
        is_speech = self._vad.is_speech
        for i in range(len(powers)):
            pcm = data[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
            power = float(powers[i])
            speech = power >= self._min_power and power > 0.0 and is_speech(pcm)
            self._step(_Frame(self._position, pcm, speech, power), results)
            self._position += FRAME_SAMPLES
        if self._utt is not None:
            self._decode_pending()
            if self._utt.since_interim >= self._interim_samples:
                self._interim(results)
        return results

    def flush(self) -> list[Recognition]:
        """Finals for everything fed so far; the stream then takes more audio."""
        usable = len(self._pending) - len(self._pending) % 2
        tail, self._pending = self._pending[:usable], self._pending[usable:]
        results: list[Recognition] = []
        if tail:
            frame = _Frame(self._position, tail, False, 0.0)
            self._position += len(tail) // 2
            if self._utt is not None:
                self._add_to_utterance(frame)
            else:
                self._ring.append(frame)
        if self._utt is None and sum(f.speech for f in self._ring) >= 3:
            self._start_utterance()  # speech the start window had not confirmed yet
        if self._utt is not None:
            self._end_utterance(results)
        self._ring.clear()
        self._recent.clear()
        return results

    def close(self) -> None:
        if self._utt is not None:
            self.decoder.end_utt()
            self._utt = None

    # -- endpointing -------------------------------------------------------------------------

    def _step(self, frame: _Frame, results: list[Recognition]) -> None:
        self._recent.append(frame.speech)
        if self._utt is None:
            self._ring.append(frame)
            if sum(self._recent) >= self._start_needed:
                self._start_utterance()
            return
        utt = self._utt
        self._add_to_utterance(frame)
        utt.recent.append(frame.speech)
        if len(utt.recent) > self._end_frames:
            utt.recent.popleft()
        silent = len(utt.recent) == self._end_frames and sum(utt.recent) <= self._end_allowed
        if silent or utt.end - utt.start >= self._max_utt:
            self._end_utterance(results)

    def _start_utterance(self) -> None:
        frames = list(self._ring)
        self._ring.clear()
        speech_powers = [f.power for f in frames if f.speech]
        if self._level_power is None and speech_powers:
            self._level_power = float(np.mean(speech_powers))
        self._utt = _Utterance(start=frames[0].start, end=frames[0].start)
        self.decoder.start_utt()
        for frame in frames:
            self._add_to_utterance(frame)

    def _add_to_utterance(self, frame: _Frame) -> None:
        utt = self._utt
        assert utt is not None
        if frame.speech and frame.power > 0.0:
            if self._level_power is None:
                self._level_power = frame.power
            else:  # about 2 s of speech to follow a level change
                self._level_power += 0.015 * (frame.power - self._level_power)
        self._to_decode.append(self._preprocess(frame.pcm))
        n = len(frame.pcm) // 2
        utt.end = frame.start + n
        utt.since_interim += n

    def _preprocess(self, pcm: bytes) -> bytes:
        s = self.settings
        if s.target_level is None and not self._noise_sigma:
            return pcm
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        if s.target_level is not None and self._level_power:
            gain = s.target_level / math.sqrt(self._level_power)
            x *= min(s.max_gain, max(1.0 / s.max_gain, gain))
        if self._noise_sigma:
            x += self._rng.normal(0.0, self._noise_sigma, len(x))
        return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()

    # -- decoding ------------------------------------------------------------------------------

    def _decode_pending(self) -> None:
        if self._to_decode:
            self.decoder.process_raw(b"".join(self._to_decode))
            self._to_decode.clear()

    def _interim(self, results: list[Recognition]) -> None:
        utt = self._utt
        assert utt is not None
        utt.since_interim = 0
        hyp = self.decoder.hyp()  # cheaper than the segmentation: look at that only on a change
        raw = hyp.hypstr if hyp is not None else ""
        if not raw or raw == utt.last_raw:
            return
        utt.last_raw = raw
        text, words = self._hypothesis(utt)
        if text and text != utt.last_interim:
            utt.last_interim = text
            results.append(self._result(text, False, words, utt))

    def _end_utterance(self, results: list[Recognition]) -> None:
        utt = self._utt
        assert utt is not None
        self._decode_pending()
        self.decoder.end_utt()
        self._utt = None
        text, words = self._hypothesis(utt)
        if text:
            results.append(self._result(text, True, words, utt))

    def _hypothesis(self, utt: _Utterance) -> tuple[str, tuple[Word, ...]]:
        """The decoder's current text and word times; the text is always the words joined."""
        words = _clean_words(self.decoder, utt.start / ENGINE_SAMPLE_RATE)
        if words:
            return " ".join(w.word for w in words), words
        hyp = self.decoder.hyp()  # no segmentation (should not happen): spread the words evenly
        text = " ".join(hyp.hypstr.lower().split()) if hyp is not None else ""
        return text, words_between(text, utt.start / ENGINE_SAMPLE_RATE, utt.end / ENGINE_SAMPLE_RATE)

    @staticmethod
    def _result(text: str, final: bool, words: tuple[Word, ...], utt: _Utterance) -> Recognition:
        start = utt.start / ENGINE_SAMPLE_RATE
        end = utt.end / ENGINE_SAMPLE_RATE
        words = tuple(Word(w.word, max(start, min(w.start, end)), max(start, min(w.end, end))) for w in words)
        return Recognition(text, final, words, round(start, 3), round(end, 3))


# -- the worker process ---------------------------------------------------------------------


class _Host:
    """The streams of one worker process, by id."""

    def __init__(self, settings: RecognizerSettings) -> None:
        self.settings = settings
        self.cache = DecoderCache(settings)
        self.streams: dict[int, StreamRecognizer] = {}

    def handle(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "open":
            sid, options = args
            self.streams[sid] = StreamRecognizer(self.cache.take(), options, self.settings)
            return os.getpid()
        if op == "feed":
            return self.streams[args[0]].feed(args[1])
        if op == "flush":
            return self.streams[args[0]].flush()
        if op == "close":
            stream = self.streams.pop(args[0], None)
            if stream is not None:
                stream.close()
                self.cache.give_back(stream.decoder)
            return None
        if op == "ping":
            return os.getpid()
        raise ValueError(f"unknown request {op!r}")


def main(argv: list[str] | None = None) -> int:
    """Serve requests on the connection whose file descriptor is ``argv[0]``.

    Each request is ``(op, args)``; each answer is ``("ok", value)`` or
    ``("error", "Type: message", traceback)``. The first request must be
    ``("init", (settings,))``. The loop ends on ``("stop", ())`` or when the
    parent's end of the connection closes.
    """
    from multiprocessing.connection import Connection

    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    conn = Connection(int(argv[0]))
    host: _Host | None = None
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return 0
        if op == "stop":
            conn.send(("ok", None))
            return 0
        try:
            if op == "init":
                import pocketsphinx  # noqa: F401  (fail here, not in the first stream)

                host = _Host(args[0])
                reply: tuple[Any, ...] = ("ok", os.getpid())
            elif host is None:
                raise RuntimeError("the worker got a request before init")
            else:
                reply = ("ok", host.handle(op, args))
        except Exception as exc:  # reported to the caller, who raises it there
            reply = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
