"""Capturing and filtering what C libraries write to file descriptor 2."""

from __future__ import annotations

import logging
import os
import re
import threading

import pytest

from cartesia_sync import capture_native_stderr, native_stderr_filtered
from cartesia_sync._native_stderr import DECODER_NOISE


def test_the_capture_takes_what_c_code_writes_and_restores_the_descriptor(capfd):
    before = os.fstat(2)
    with capture_native_stderr() as captured:
        os.write(2, b"ALSA lib pcm.c:1:(x) Unknown PCM nothing\n")
        with capture_native_stderr() as inner:  # nested: the outer capture gets the text
            os.write(2, b"jack server is not running or cannot be started\n")
    assert captured.text == (
        "ALSA lib pcm.c:1:(x) Unknown PCM nothing\njack server is not running or cannot be started\n"
    )
    assert inner.text == ""
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_native_stderr() as failed:
            os.write(2, b"ALSA lib during a failure\n")
            raise RuntimeError("boom")
    assert failed.text == "ALSA lib during a failure\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_filtered_logs_the_noise_and_writes_the_rest_back(capfd, caplog):
    logger = logging.getLogger("cartesia_sync.test")
    with caplog.at_level(logging.DEBUG, logger="cartesia_sync.test"):
        with native_stderr_filtered(DECODER_NOISE, logger, "libmpg123 printed while decoding x.mp3"):
            os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (2304) too large\n")
            os.write(2, b"a line that is not noise\n")
    assert capfd.readouterr().err == "a line that is not noise\n"
    assert "decoding x.mp3" in caplog.text and "part2_3_length" in caplog.text


def test_filtered_restores_stderr_when_the_block_raises(capfd):
    try:
        with native_stderr_filtered(re.compile("^noise"), logging.getLogger("x"), "failing"):
            os.write(2, b"noise\nkept\n")
            raise ValueError("boom")
    except ValueError:
        pass
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "kept\nafter\n"


def test_captures_of_two_threads_do_not_mix(capfd):
    """The second thread's capture waits for the first: each gets its own text, and fd 2 is restored."""
    texts = {}
    started = threading.Event()

    def second():
        started.wait(5)
        with capture_native_stderr() as captured:
            os.write(2, b"second\n")
        texts["second"] = captured.text

    thread = threading.Thread(target=second)
    thread.start()
    with capture_native_stderr() as first:
        started.set()
        os.write(2, b"first\n")
    thread.join(5)
    assert first.text == "first\n" and texts["second"] == "second\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
