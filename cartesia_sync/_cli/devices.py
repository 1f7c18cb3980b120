"""``cartesia-sync devices``: the audio input devices, as lines or JSON (exit 1 when there is none)."""

from __future__ import annotations

import argparse
import json

from .._terminal import terminal_safe
from .common import EXIT_OK

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """List every device that can capture; raise ``NoInputDeviceError`` (exit 1) after an empty list."""
    from cartesia_sync_plugins.microphone import NoInputDeviceError, list_input_devices

    devices = list_input_devices()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "index": d.index,
                        "name": d.name,
                        "channels": d.max_input_channels,
                        "default_rate": d.default_sample_rate,
                    }
                    for d in devices
                ],
                indent=2,
            )
        )
    else:
        for d in devices:
            name = terminal_safe(d.name, multiline=False)
            print(f"{d.index:3d}  {name}  ({d.max_input_channels} ch, {d.default_sample_rate:g} Hz)")
    if not devices:  # with --json, stdout still holds a valid (empty) list
        raise NoInputDeviceError()
    return EXIT_OK
