"""Stream a microphone into a session, through PortAudio (PyAudio) in callback mode.

::

    import cartesia_sync
    from cartesia_sync_plugins.microphone import Microphone, list_input_devices

    print(list_input_devices())                       # what can be opened
    client = cartesia_sync.Client()
    with client.connect() as session, Microphone(device="usb") as mic:
        mic.start(session)
        ...                                           # mic.pause() / mic.resume() while the bot speaks
        mic.stop()
        print(session.text, mic.dropped_seconds)

How the audio flows: PortAudio calls :meth:`Microphone._callback` on its own
thread with each block. The callback never blocks: it appends the block to a
bounded buffer (``buffer_seconds`` of audio) that drops the OLDEST audio when it
is full, and counts what it dropped. A separate thread, ``cartesia-sync-mic-<n>``,
moves blocks from that buffer into :meth:`cartesia_sync.Session.send`, which
downmixes to mono and resamples to the session's rate (soxr, streaming) and may
block when the network stalls: that is why the buffer sits in between.

Quiet by default: PortAudio and the ALSA/JACK libraries under it print probing
failures (``ALSA lib pcm.c:...``, ``jack server is not running``) straight to
file descriptor 2 while they initialise, list and open devices. With
``quiet=True`` (the default of :class:`Microphone`, :func:`list_input_devices`
and :func:`find_input_device`) those calls run with the process's file
descriptor 2 briefly redirected (see :func:`cartesia_sync.native_stderr_filtered`
for what that means for other threads); the recognised noise is logged at
DEBUG on this module's logger, and any other line is written back to stderr.
``quiet=False`` leaves file descriptor 2 alone.

Needs the ``mic`` extra: ``pip install 'cartesia-sync[mic]'`` (PyAudio, built
against the PortAudio headers: ``apt-get install portaudio19-dev``).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any

import numpy as np

from cartesia_sync import CartesiaSyncError, Session, SessionClosedError, StreamTimeout

from ._input_devices import InputDevice, find_input_device, list_input_devices, select_device
from ._mic_errors import MicrophoneError, NoInputDeviceError
from ._portaudio import PORTAUDIO_NOISE as PORTAUDIO_NOISE  # what the audio libraries print while probing
from ._portaudio import close_portaudio, native_output, open_portaudio

__all__ = [
    "Microphone",
    "MicrophoneError",
    "NoInputDeviceError",
    "InputDevice",
    "list_input_devices",
    "find_input_device",
]

logger = logging.getLogger(__name__)

_numbers = itertools.count(1)

#: The rate and channel count tried first when none is asked for (the session's format).
DEFAULT_RATE = 16000
DEFAULT_CHANNELS = 1

#: A capture speed (audio seconds per wall-clock second) at or above this is "faster than real
#: time": a sound card's clock is off by far less than 1 %, so only a device without a clock (ALSA's
#: ``file`` plugin, a misconfigured loopback) or a broken driver gets there.
FASTER_THAN_REALTIME = 1.25


def _candidates(dev: InputDevice, rate: int | None, channels: int | None) -> list[tuple[int, int]]:
    """Formats to try, best first: the requested (or 16 kHz mono), then the device's own rate and channels."""
    rates = [rate or DEFAULT_RATE, int(round(dev.default_sample_rate))]
    counts = [channels or DEFAULT_CHANNELS, min(2, dev.max_input_channels), dev.max_input_channels]
    result: list[tuple[int, int]] = []
    for r in rates:
        for c in counts:
            if r > 0 and 0 < c <= max(dev.max_input_channels, channels or 0) and (r, c) not in result:
                result.append((r, c))
    return result


# -- the microphone ------------------------------------------------------------


class Microphone:
    """Capture from an input device and send the audio to a session.

    :param device: ``None`` for the default input device, a PortAudio index, or part of a
        device name (case-insensitive); see :func:`list_input_devices`.
    :param rate: capture rate to try first (default 16000, the session's rate); if the device
        refuses it, its own default rate is used and the session resamples.
    :param channels: channel count to try first (default 1); more channels are downmixed.
    :param block_seconds: audio per PortAudio callback.
    :param buffer_seconds: audio held between the callback and the session; when the session
        cannot take audio fast enough, the OLDEST audio is dropped (see :attr:`dropped_seconds`).
    :param speed_window: the device's capture speed is measured over windows of this many seconds
        (of wall-clock time, or of audio, whichever comes first); see :attr:`capture_speed`.
    :param quiet: capture what PortAudio and the ALSA/JACK libraries print on file descriptor 2
        while the device is opened and closed, and log it at DEBUG (see the module docstring).
    """

    name = "microphone"

    def __init__(
        self,
        device: None | int | str = None,
        rate: int | None = None,
        channels: int | None = None,
        block_seconds: float = 0.1,
        buffer_seconds: float = 2.0,
        speed_window: float = 3.0,
        quiet: bool = True,
    ) -> None:
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0):
            raise MicrophoneError(f"rate must be a positive number of Hz, got {rate!r}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0):
            raise MicrophoneError(f"channels must be a positive integer, got {channels!r}")
        if not (isinstance(block_seconds, (int, float)) and 0.005 <= block_seconds <= 1.0):
            raise MicrophoneError(f"block_seconds must be between 0.005 and 1.0, got {block_seconds!r}")
        if not (isinstance(buffer_seconds, (int, float)) and buffer_seconds >= block_seconds):
            raise MicrophoneError(
                f"buffer_seconds must hold at least one block ({block_seconds:g} s), got {buffer_seconds!r}"
            )
        if not (isinstance(speed_window, (int, float)) and speed_window >= block_seconds):
            raise MicrophoneError(
                f"speed_window must span at least one block ({block_seconds:g} s), got {speed_window!r}"
            )
        self._wanted_device = device
        self._wanted_rate = rate
        self._wanted_channels = channels
        self.block_seconds = float(block_seconds)
        self.buffer_seconds = float(buffer_seconds)
        self.speed_window = float(speed_window)
        self.quiet = bool(quiet)
        self.number = next(_numbers)

        self._pa: Any = None
        self._stream: Any = None
        self._session: Session | None = None
        self._thread: threading.Thread | None = None
        self._device: InputDevice | None = None
        self._rate = 0
        self._channels = 0
        self._frame_bytes = 0
        self._max_frames = 0
        self._continue = 0
        self._error: BaseException | None = None

        self._lock = threading.Lock()  # held only for a few list operations, never while sending
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered_frames = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._paused = False
        self._forwarding = False
        self._captured_frames = 0
        self._dropped_frames = 0
        self._discarded_frames = 0
        self._forwarded_frames = 0
        self._unsent_frames = 0
        self._overflows = 0
        # Capture speed, measured in the callback: the start of the current window, (monotonic time,
        # frames captured by then), and the speeds of the last and the fastest complete window.
        self._window: tuple[float, int] | None = None
        self._speed: float | None = None
        self._peak_speed: float | None = None
        self._speed_reported = False

    # -- public API --------------------------------------------------------------

    @property
    def device(self) -> InputDevice | None:
        """The device being captured from (``None`` before :meth:`start`)."""
        return self._device

    @property
    def sample_rate(self) -> int:
        """The capture rate in Hz (0 before :meth:`start`)."""
        return self._rate

    @property
    def channels(self) -> int:
        """The captured channel count (0 before :meth:`start`)."""
        return self._channels

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._stream is not None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def error(self) -> BaseException | None:
        """The error that stopped forwarding (e.g. the session closed), if one did."""
        return self._error

    @property
    def captured_seconds(self) -> float:
        """Seconds of audio the device delivered, paused time included."""
        return self._seconds(self._captured_frames)

    @property
    def dropped_seconds(self) -> float:
        """Seconds of audio dropped (oldest first) because the buffer was full."""
        return self._seconds(self._dropped_frames)

    @property
    def dropped_frames(self) -> int:
        """Frames dropped because the buffer was full."""
        return self._dropped_frames

    @property
    def discarded_seconds(self) -> float:
        """Seconds of audio captured while paused, thrown away on purpose (not counted as dropped)."""
        return self._seconds(self._discarded_frames)

    @property
    def forwarded_seconds(self) -> float:
        """Seconds of audio handed to ``session.send()``."""
        return self._seconds(self._forwarded_frames)

    @property
    def unsent_seconds(self) -> float:
        """Seconds still buffered when forwarding ended (stop timed out, or the session closed)."""
        return self._seconds(self._unsent_frames)

    @property
    def buffered_seconds(self) -> float:
        """Seconds waiting in the buffer right now."""
        return self._seconds(self._buffered_frames)

    @property
    def capture_speed(self) -> float | None:
        """Audio seconds the device delivered per wall-clock second, over the last complete window.

        About 1.0 for a real device. ``None`` until a window of :attr:`speed_window` seconds (of wall
        time, or of audio) is complete. A device well above 1.0 has no clock or a broken one: its
        excess audio ends up dropped (:attr:`dropped_seconds`) whatever the network does.
        """
        return self._speed

    @property
    def peak_capture_speed(self) -> float | None:
        """The highest :attr:`capture_speed` of any window since :meth:`start`."""
        return self._peak_speed

    @property
    def faster_than_realtime(self) -> bool:
        """True once a window's capture speed reached :data:`FASTER_THAN_REALTIME` (1.25x)."""
        return self._peak_speed is not None and self._peak_speed >= FASTER_THAN_REALTIME

    def start(self, session: Session) -> Microphone:
        """Open the device and start sending its audio to ``session``. Returns ``self``.

        :raises MicrophoneError: PyAudio missing, PortAudio failing, no such device, or no
            format the device accepts; nothing is left open.
        """
        if self._stream is not None:
            raise MicrophoneError("this microphone is already started; stop() it first")
        if self._thread is not None and self._thread.is_alive():
            raise MicrophoneError(
                "this microphone's last forwarding thread is still blocked in session.send(); close that session first"
            )
        self._reset()
        with native_output(self.quiet, "opening the input device"):
            self._open(session)
        logger.info("microphone %s: capturing %d Hz, %d channel(s)", self._device, self._rate, self._channels)
        return self

    def pause(self) -> None:
        """Stop forwarding audio; the session stays open (its keepalive covers the gap).

        Audio captured while paused is discarded (see :attr:`discarded_seconds`), not dropped.
        """
        self._paused = True

    def resume(self) -> None:
        """Forward audio again after :meth:`pause`."""
        self._paused = False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing, release the device, send what is still buffered, and join the thread.

        Idempotent. The device is released first (``stream.close()``, ``PyAudio.terminate()``),
        then the buffered audio is sent within ``timeout`` seconds; what could not be sent is
        counted in :attr:`unsent_seconds`. The session is left open: close it yourself.
        """
        self._release(timeout)

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<Microphone #{self.number} {state} device={self._device!s} rate={self._rate} "
            f"channels={self._channels} captured={self.captured_seconds:.1f}s dropped={self.dropped_seconds:.1f}s>"
        )

    # -- PortAudio callback: runs on PortAudio's thread, never blocks ---------------

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        """Queue one captured block (drop the oldest when full). Override only for tests."""
        if status:
            self._overflows += 1
        if in_data:
            frames = len(in_data) // self._frame_bytes
            self._captured_frames += frames
            self._measure_speed()
            if self._paused or not self._forwarding:
                self._discarded_frames += frames
            else:
                with self._lock:
                    self._buffer.append(in_data)  # bytes are immutable: PyAudio hands us a fresh copy
                    self._buffered_frames += frames
                    while self._buffered_frames > self._max_frames and len(self._buffer) > 1:
                        old = self._buffer.popleft()
                        lost = len(old) // self._frame_bytes
                        self._buffered_frames -= lost
                        self._dropped_frames += lost
                self._wake.set()
        return None, self._continue

    def _measure_speed(self) -> None:
        """Close the speed window once it spans ``speed_window`` s of wall time or of audio (callback thread)."""
        now = time.monotonic()
        if self._window is None:  # the first block was captured before now: count from the next one
            self._window = (now, self._captured_frames)
            return
        started, frames = self._window
        wall = now - started
        audio = (self._captured_frames - frames) / self._rate
        if wall >= self.speed_window or audio >= self.speed_window:
            speed = audio / max(wall, 1e-6)
            self._speed = speed
            if self._peak_speed is None or speed > self._peak_speed:
                self._peak_speed = speed
            self._window = (now, self._captured_frames)

    # -- forwarding thread --------------------------------------------------------

    def _forward(self) -> None:
        session = self._session
        assert session is not None
        try:
            while True:
                self._wake.wait(0.05)
                self._wake.clear()
                if self.faster_than_realtime and not self._speed_reported:
                    self._speed_reported = True
                    logger.info(
                        "microphone %s: the device delivers audio at %.1fx real time (no clock?); "
                        "what the session cannot take is dropped",
                        self._device,
                        self._peak_speed,
                    )
                blocks = self._take()
                if not blocks:
                    if self._stopping.is_set():
                        return
                    continue
                data = b"".join(blocks)
                frames = len(data) // self._frame_bytes
                samples = np.frombuffer(data, dtype="<i2")
                if self._channels > 1:
                    samples = samples.reshape(-1, self._channels)
                try:
                    session.send(samples, sample_rate=self._rate)
                except StreamTimeout as exc:  # the session dropped and counted this part: go on
                    logger.warning("microphone: %s", exc)
                except BaseException:
                    self._unsent_frames += frames  # taken from the buffer, never queued
                    raise
                self._forwarded_frames += frames
        except (SessionClosedError, CartesiaSyncError) as exc:
            self._error = exc
            if not self._stopping.is_set():
                logger.warning("microphone: stopped forwarding, the session cannot take audio: %s", exc)
        except Exception as exc:  # pragma: no cover - a bug: keep it visible
            self._error = exc
            logger.exception("microphone: forwarding failed")
        finally:
            self._forwarding = False
            with self._lock:
                left = self._buffered_frames
                self._buffer.clear()
                self._buffered_frames = 0
            self._unsent_frames += left

    def _take(self) -> list[bytes]:
        """The oldest buffered block (one at a time: the backlog stays where drop-oldest applies)."""
        with self._lock:
            if not self._buffer:
                return []
            block = self._buffer.popleft()
            self._buffered_frames -= len(block) // self._frame_bytes
        if self._buffer:
            self._wake.set()
        return [block]

    # -- internals -----------------------------------------------------------------

    def _seconds(self, frames: int) -> float:
        return frames / self._rate if self._rate else 0.0

    def _reset(self) -> None:
        self._stopping.clear()
        self._wake.clear()
        self._buffer.clear()
        self._buffered_frames = 0
        self._error = None
        self._captured_frames = self._dropped_frames = self._discarded_frames = 0
        self._forwarded_frames = self._unsent_frames = self._overflows = 0
        self._window = self._speed = self._peak_speed = None
        self._speed_reported = False

    def _open(self, session: Session) -> None:
        """Initialise PortAudio, open and start the device, and start the forwarding thread."""
        pyaudio, pa = open_portaudio()
        try:
            dev = select_device(pa, self._wanted_device)
            stream, rate, channels = self._open_stream(pyaudio, pa, dev)
        except BaseException:
            pa.terminate()
            raise
        self._pa, self._device, self._rate, self._channels = pa, dev, rate, channels
        self._frame_bytes = 2 * channels
        self._max_frames = max(1, int(round(self.buffer_seconds * rate)))
        self._continue = pyaudio.paContinue
        self._session = session
        self._forwarding = True
        self._thread = threading.Thread(target=self._forward, name=f"cartesia-sync-mic-{self.number}", daemon=True)
        self._thread.start()
        self._stream = stream
        try:
            stream.start_stream()
        except Exception as exc:
            self._release(timeout=1.0)
            raise MicrophoneError(f"could not start capturing from {dev.name!r}: {exc}") from exc

    def _open_stream(self, pyaudio: Any, pa: Any, dev: InputDevice) -> tuple[Any, int, int]:
        """Open ``dev`` in callback mode at the first format it accepts."""
        tried = _candidates(dev, self._wanted_rate, self._wanted_channels)
        supported = []
        refusals = []
        for rate, channels in tried:
            try:
                if pa.is_format_supported(
                    rate, input_device=dev.index, input_channels=channels, input_format=pyaudio.paInt16
                ):
                    supported.append((rate, channels))
                    break
            except (ValueError, OSError) as exc:
                refusals.append(f"{rate} Hz x{channels}: {exc}")
        # Nothing reported as supported: still try to open, for PortAudio's own error.
        attempts = supported or tried[:1]
        last: BaseException | None = None
        for rate, channels in attempts:
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=dev.index,
                    frames_per_buffer=max(1, int(round(self.block_seconds * rate))),
                    stream_callback=self._callback,
                    start=False,
                )
                return stream, rate, channels
            except (OSError, ValueError) as exc:
                last = exc
        formats = ", ".join(f"{r} Hz x{c}" for r, c in tried)
        detail = f" (refused: {'; '.join(refusals)})" if refusals else ""
        raise MicrophoneError(
            f"the input device {dev.name!r} (index {dev.index}) could not be opened for 16-bit capture: {last}; "
            f"tried {formats}{detail}. Pick another device (list_input_devices()), or pass a rate and channel "
            "count it supports, e.g. Microphone(rate=48000, channels=2)"
        ) from last

    def _release(self, timeout: float) -> None:
        stream, pa, thread = self._stream, self._pa, self._thread
        self._stream = self._pa = None
        if stream is not None or pa is not None:
            with native_output(self.quiet, "closing the input device"):
                close_portaudio(stream, pa)
        self._stopping.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning(
                    "microphone: the forwarding thread is still blocked in session.send() after "
                    "%.1f s; it ends when the session does",
                    timeout,
                )
            else:
                self._thread = None
        self._session = None if self._thread is None else self._session
