"""PortAudio access for the microphone: load PyAudio lazily, initialise and terminate PortAudio, and keep
what its native libraries print on file descriptor 2 out of the terminal.

PortAudio and the ALSA/JACK libraries under it print probing failures
(``ALSA lib pcm.c:...``, ``jack server is not running``) straight to file
descriptor 2 while they initialise, list and open devices. :func:`native_output`
runs such a call with that descriptor briefly redirected through
:func:`cartesia_sync.native_stderr_filtered`: the recognised noise
(:data:`PORTAUDIO_NOISE`) is logged at DEBUG on the microphone's logger, any
other line is written back to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from cartesia_sync import native_stderr_filtered

from ._mic_errors import MicrophoneError

__all__ = ["PORTAUDIO_NOISE", "INSTALL_HINT", "native_output", "import_pyaudio", "open_portaudio", "close_portaudio"]

#: The microphone's logger (its documented name), also for what PortAudio printed.
logger = logging.getLogger("cartesia_sync_plugins.microphone")

INSTALL_HINT = "pip install 'cartesia-sync[mic]' (needs the PortAudio headers: apt-get install portaudio19-dev)"


#: Lines the audio libraries print while probing: ALSA's error handler, JACK's client library,
#: PulseAudio's ALSA plugin, and PortAudio's own checks.
PORTAUDIO_NOISE = re.compile(
    r"^(?:ALSA lib |Cannot connect to server |jack server is not running|JackShmReadWritePtr|Jack[A-Za-z]*::"
    r"|Expression '.*' failed in ')"
)


@contextlib.contextmanager
def native_output(quiet: bool, what: str) -> Iterator[None]:
    """Run a PortAudio call with its C-level stderr filtered (``quiet``): noise to DEBUG, the rest back."""
    if not quiet:
        yield
        return
    with native_stderr_filtered(PORTAUDIO_NOISE, logger, f"microphone: PortAudio printed while {what}"):
        yield


def import_pyaudio() -> Any:
    """The ``pyaudio`` module, imported only when a microphone is used (the ``mic`` extra)."""
    try:
        import pyaudio
    except ImportError as exc:
        raise MicrophoneError(f"PyAudio is not installed, so the microphone cannot be used: {INSTALL_HINT}") from exc
    return pyaudio


def open_portaudio() -> tuple[Any, Any]:
    """Import PyAudio and initialise PortAudio: ``(pyaudio module, PyAudio instance)``."""
    pyaudio = import_pyaudio()
    try:
        return pyaudio, pyaudio.PyAudio()
    except Exception as exc:  # PortAudio reports init failures as OSError, or worse
        raise MicrophoneError(
            f"PortAudio failed to initialise ({exc}); check that the audio system (ALSA, PulseAudio, "
            "PipeWire) works, e.g. with 'arecord -l', and that this user may use it (the 'audio' group)"
        ) from exc


def close_portaudio(stream: Any, pa: Any) -> None:
    """Stop and close ``stream``, then terminate PortAudio (either may be ``None``)."""
    if stream is not None:
        try:
            if stream.is_active():
                stream.stop_stream()
        except Exception as exc:  # the device vanished: closing is all that is left
            logger.debug("microphone: stop_stream failed: %s", exc)
        try:
            stream.close()
        except Exception as exc:
            logger.debug("microphone: close failed: %s", exc)
    if pa is not None:
        pa.terminate()
