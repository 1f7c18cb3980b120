"""``cartesia-sync listen``: live captions from a microphone until Ctrl-C, then the final text on stdout."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._client import Client
from .common import EXIT_OK, note, print_text
from .endpoint import endpoint
from .outputs import output_plugins

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Caption the microphone on stderr until Ctrl-C; then flush, close, and print the whole text."""
    from cartesia_sync_plugins.live_captions import LiveCaptions
    from cartesia_sync_plugins.microphone import Microphone, find_input_device

    turns = bool(getattr(args, "turns", False))
    model = args.model or ("ink-2" if turns else "ink-whisper")
    device: Any = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    # Find the device first: without one, fail in one line before starting a server or connecting.
    microphone = Microphone(device=find_input_device(device).index)
    with endpoint(args) as reach:
        # A live source needs no deep send buffer: the microphone's own drop-oldest buffer takes up a
        # stall, and a shallow one keeps captions close to the speech and Ctrl-C quick.
        client = Client(
            model=model,
            language=args.language,
            plugins=[LiveCaptions(sys.stderr), *output_plugins(args)],
            load_entrypoints=not args.no_plugins,
            max_buffer_seconds=0.5,
            **reach,
        )
        # A turn session prints each turn as it ends: the captions plugin commits it at turn.end.
        session: Any = client.connect_turns(realtime=True, model=model) if turns else client.connect(realtime=True)
        try:
            microphone.start(session)
            note(
                f"listening on {microphone.device.name} (device {microphone.device.index}, "
                f"{microphone.sample_rate} Hz, {microphone.channels} channel{'s' if microphone.channels > 1 else ''})"
                "; Ctrl-C stops"
            )
            while microphone.running:
                time.sleep(0.2)
            if microphone.error is not None:
                raise microphone.error
        except KeyboardInterrupt:
            pass  # the normal way to stop: flush what was said, then close cleanly
        except BaseException:
            microphone.stop()
            session.abort()
            raise
        try:
            microphone.stop()
            session.close()
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            session.abort()
            raise
    print_text(session.text.strip())
    if microphone.dropped_seconds:
        speed = microphone.peak_capture_speed or 0.0
        cause = (
            f"the device delivered audio at {speed:.{1 if speed < 10 else 0}f}x real time"
            if microphone.faster_than_realtime
            else "the connection could not keep up"
        )
        note(f"{cause}; {microphone.dropped_seconds:.1f} s were dropped")
    return EXIT_OK
