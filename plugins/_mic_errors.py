"""The microphone's errors, shared by device selection, PortAudio access and capture."""

from __future__ import annotations

from cartesia_sync import CartesiaSyncError

__all__ = ["MicrophoneError", "NoInputDeviceError"]


class MicrophoneError(CartesiaSyncError):
    """The microphone could not be opened or used; the message says what to do."""


class NoInputDeviceError(MicrophoneError):
    """PortAudio lists no device that can capture (no sound card, no permission, or an ALSA set-up without one)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or (
                "no audio input device was found: check that a microphone or sound card is connected "
                "('arecord -l' lists them), that this user may use it (the 'audio' group), and the ALSA or "
                "PulseAudio configuration (~/.asoundrc, $ALSA_CONFIG_PATH); on a machine without sound, an ALSA "
                "'file' device can stand in for one (see the README, Microphone)"
            )
        )
