"""The capture devices PortAudio offers: listing them and choosing one by index or by part of its name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._mic_errors import MicrophoneError, NoInputDeviceError
from ._portaudio import native_output, open_portaudio

__all__ = ["InputDevice", "input_devices", "list_input_devices", "find_input_device", "select_device", "device_list"]


@dataclass(frozen=True)
class InputDevice:
    """A PortAudio device that can capture.

    :ivar index: PortAudio's device index (pass it as ``Microphone(device=index)``).
    :ivar name: the device's name (``Microphone(device="part of it")`` selects it).
    :ivar max_input_channels: the most channels it captures.
    :ivar default_sample_rate: its preferred rate, in Hz.
    """

    index: int
    name: str
    max_input_channels: int
    default_sample_rate: float

    def __str__(self) -> str:
        return f"[{self.index}] {self.name} ({self.max_input_channels} ch, {self.default_sample_rate:g} Hz)"


def input_devices(pa: Any) -> list[InputDevice]:
    """The devices of an initialised PortAudio (``pa``) that have at least one input channel."""
    devices = []
    for index in range(pa.get_device_count()):
        try:
            info = pa.get_device_info_by_index(index)
        except Exception:  # pragma: no cover - a device vanishing while listed
            continue
        if int(info.get("maxInputChannels", 0)) > 0:
            devices.append(
                InputDevice(
                    index=int(info["index"]),
                    name=str(info["name"]),
                    max_input_channels=int(info["maxInputChannels"]),
                    default_sample_rate=float(info["defaultSampleRate"]),
                )
            )
    return devices


def list_input_devices(quiet: bool = True) -> list[InputDevice]:
    """Every device that can capture (at least one input channel), in PortAudio's order.

    :param quiet: capture what the audio libraries print on file descriptor 2 meanwhile and log it
        at DEBUG (see the :mod:`cartesia_sync_plugins.microphone` docstring); ``False`` lets it
        through.
    :raises MicrophoneError: PyAudio is not installed, or PortAudio failed to initialise.
    """
    with native_output(quiet, "listing devices"):
        _, pa = open_portaudio()
        try:
            return input_devices(pa)
        finally:
            pa.terminate()


def find_input_device(device: None | int | str = None, quiet: bool = True) -> InputDevice:
    """The input device :class:`Microphone` would open for ``device``, without opening it.

    Useful to fail early, e.g. before connecting a session.

    :param device: ``None`` (the default input device), an index, or part of a name.
    :param quiet: as for :func:`list_input_devices`.
    :raises NoInputDeviceError: there is no input device at all.
    :raises MicrophoneError: PyAudio missing, PortAudio failing, or no device matching ``device``.
    """
    with native_output(quiet, "looking for an input device"):
        _, pa = open_portaudio()
        try:
            return select_device(pa, device)
        finally:
            pa.terminate()


def device_list(devices: Sequence[InputDevice]) -> str:
    return "; ".join(str(d) for d in devices) if devices else "none"


def select_device(pa: Any, device: None | int | str) -> InputDevice:
    """Resolve ``device`` (None, an index, or part of a name) to one input device."""
    devices = input_devices(pa)
    if not devices:
        raise NoInputDeviceError()
    if device is None:
        try:
            index = int(pa.get_default_input_device_info()["index"])
        except Exception as exc:  # OSError: No Default Input Device Available
            raise MicrophoneError(
                f"there is no default input device ({exc}); choose one with Microphone(device=index or name) "
                f"among: {device_list(devices)}"
            ) from exc
        for candidate in devices:
            if candidate.index == index:
                return candidate
        raise MicrophoneError(
            f"the default device (index {index}) cannot capture; choose one with Microphone(device=...) "
            f"among: {device_list(devices)}"
        )
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device.strip())
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise MicrophoneError(f"device must be None, an index or part of a name, got {device!r}")
    if isinstance(device, int):
        for candidate in devices:
            if candidate.index == device:
                return candidate
        raise MicrophoneError(
            f"there is no input device with index {device}; the input devices are: {device_list(devices)}"
        )
    wanted = device.strip().casefold()
    exact = [d for d in devices if d.name.casefold() == wanted]
    matches = exact or [d for d in devices if wanted in d.name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MicrophoneError(
            f"no input device name contains {device!r}; the input devices are: {device_list(devices)}"
        )
    raise MicrophoneError(
        f"{len(matches)} input devices match {device!r}: {device_list(matches)}; give more of the name, or the index"
    )
