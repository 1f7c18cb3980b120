"""Batch transcription (POST /stt) against a loopback HTTP server that parses every request.

The server checks the multipart form field by field, answers with the
documented JSON, and misbehaves on demand: statuses with and without
Retry-After, a slow body, a huge body, bytes that are not JSON. The official
SDK, when installed, is pointed at the same server to compare the forms.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from batch_server import TRANSCRIPT, BatchServer, Reply
from cli_helpers import clean_env
from conftest import CANARY_KEY

import cartesia_sync
from cartesia_sync import (
    AudioFormatError,
    AuthenticationError,
    ConfigurationError,
    PaymentRequiredError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamTimeout,
)

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).parent / "data"
WAV = DATA / "utt01.wav"


def client_for(server: BatchServer, **kwargs) -> cartesia_sync.Client:
    kwargs.setdefault("api_key", "sk_test_batch")
    return cartesia_sync.Client(base_url=server.base_url, load_entrypoints=False, **kwargs)


def test_a_wav_file_is_uploaded_as_it_is_with_every_field():
    with BatchServer() as server:
        result = client_for(server, language="de").transcribe(WAV, mode="batch")
    (request,) = server.requests
    assert (request.method, request.path, request.query) == ("POST", "/stt", [])
    assert request.headers["x-api-key"] == "sk_test_batch"
    assert request.headers["cartesia-version"] == "2026-03-01"
    assert sorted(part.name for part in request.parts) == ["file", "language", "model", "timestamp_granularities[]"]
    assert request.fields("model") == ["ink-whisper"]
    assert request.fields("language") == ["de"]
    assert request.fields("timestamp_granularities[]") == ["word"]
    upload = request.part("file")
    assert upload.filename == "utt01.wav" and upload.content_type.startswith("audio/")
    assert upload.value == WAV.read_bytes()  # byte for byte: no decode, no re-encode
    assert result.text == "The quick brown fox." and result.mode == "batch" and result.complete
    assert [w.word for w in result.words] == ["The", "quick", "brown", "fox."]
    assert result.words[1].start == 0.2 and result.words[1].end == 0.45
    assert result.audio_seconds == 2.1 and result.language == "en" and result.request_id == "req-batch-1"
    assert result.stats.final_transcripts == 1 and result.realtime_factor == pytest.approx(result.wall_seconds / 2.1)


def test_no_language_leaves_the_field_out():
    with BatchServer() as server:
        client_for(server, language=None).transcribe(WAV, mode="batch")
    assert server.requests[0].fields("language") == []


def test_bytes_go_as_raw_pcm_with_encoding_and_rate_in_the_query():
    audio = (np.arange(8000) % 200 - 100).astype("<i2").tobytes()
    with BatchServer(Reply(body={"type": "transcript", "text": "hi"})) as server:
        result = client_for(server, sample_rate=8000).transcribe(audio, mode="batch")
    (request,) = server.requests
    assert request.query == [("encoding", "pcm_s16le"), ("sample_rate", "8000")]
    part = request.part("file")
    assert (part.filename, part.content_type, part.value) == ("upload", "application/octet-stream", audio)
    # no duration in the reply: the length of the bytes is the audio's
    assert result.audio_seconds == pytest.approx(1.0) and result.words == () and result.text == "hi"


def test_an_array_goes_as_s16le_at_its_own_rate():
    array = np.full(22050, 0.5, dtype=np.float32)
    with BatchServer() as server:
        client_for(server).transcribe(array, mode="batch", sample_rate=22050)
    (request,) = server.requests
    assert dict(request.query) == {"encoding": "pcm_s16le", "sample_rate": "22050"}
    samples = np.frombuffer(request.part("file").value, dtype="<i2")
    assert len(samples) == 22050 and samples[100] == 16384


def test_a_file_in_another_container_is_converted_once_to_wav(tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    aiff = tmp_path / "call.aiff"
    tone = (0.25 * np.sin(np.arange(24000) / 10)).astype(np.float32)
    soundfile.write(aiff, np.stack([tone, tone], axis=1), 24000, format="AIFF", subtype="FLOAT")
    with BatchServer() as server:
        client_for(server).transcribe(aiff, mode="batch")
    part = server.requests[0].part("file")
    assert part.filename == "call.wav" and part.content_type == "audio/wav"
    path = tmp_path / "got.wav"
    path.write_bytes(part.value)
    info = soundfile.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "WAV",
        "PCM_16",
        24000,
        2,
        24000,
    )
    assert list(temp.iterdir()) == [], "the temporary WAV was left behind"


def test_a_file_that_is_not_audio_fails_before_any_request(tmp_path):
    junk = tmp_path / "notes.wav.txt"
    junk.write_text("these are not samples\n" * 50)
    with BatchServer() as server, pytest.raises(AudioFormatError, match="could not read"):
        client_for(server).transcribe(junk, mode="batch")
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (402, PaymentRequiredError),
        (400, ServerError),
        (413, ServerError),
    ],
)
def test_a_refusal_maps_to_the_library_errors_with_its_fields_and_no_key(status, error_type):
    body = {
        "error_code": "some_code",
        "title": "Refused",
        "message": f"nope ({CANARY_KEY} echoed by a careless server)",
        "request_id": "req-err-9",
    }
    with BatchServer(Reply(status=status, body=body)) as server:
        with pytest.raises(error_type) as caught:
            client_for(server, api_key=CANARY_KEY).transcribe(WAV, mode="batch")
    error = caught.value
    assert len(server.requests) == 1  # 4xx other than 408/409/429: no retry
    assert error.status_code == status and error.request_id == "req-err-9"
    assert "nope" in str(error) and str(status) in str(error)
    if error_type is ServerError:
        assert error.error_code == "some_code" and error.title == "Refused"
    else:
        assert "nope" in error.body
    assert CANARY_KEY not in f"{error} {error!r} {getattr(error, 'body', '')} {getattr(error, 'raw', '')}"
    partial = error.partial_result
    assert partial is not None and not partial.complete and partial.mode == "batch"


def test_a_plain_text_error_body_is_kept_as_an_excerpt():
    with BatchServer(Reply(status=400, body=b"Bad Request: " + b"y" * 5000)) as server:
        with pytest.raises(ServerError) as caught:
            client_for(server).transcribe(WAV, mode="batch")
    assert "Bad Request: yyy" in str(caught.value) and len(str(caught.value)) < 1000


def test_429_with_retry_after_is_retried_after_that_long():
    with BatchServer(Reply(status=429, body={"message": "slow down"}, headers={"Retry-After": "1"}), Reply()) as server:
        started = time.monotonic()
        result = client_for(server).transcribe(WAV, mode="batch")
        elapsed = time.monotonic() - started
    assert result.text == "The quick brown fox." and len(server.requests) == 2
    assert 1.0 <= elapsed < 5.0
    # the file was sent whole both times
    assert [r.part("file").value == WAV.read_bytes() for r in server.requests] == [True, True]


def test_503_then_200_is_retried_and_x_should_retry_false_is_not():
    with BatchServer(Reply(status=503, body={"message": "busy"}), Reply()) as server:
        assert client_for(server).transcribe(WAV, mode="batch").complete
    assert len(server.requests) == 2
    with BatchServer(Reply(status=503, headers={"x-should-retry": "false"}, body={"message": "no"})) as server:
        with pytest.raises(ServerError):
            client_for(server).transcribe(WAV, mode="batch")
    assert len(server.requests) == 1


def test_retries_are_bounded_and_the_last_error_is_raised():
    with BatchServer(Reply(status=500, body={"message": "down"})) as server:
        started = time.monotonic()
        with pytest.raises(ServerError, match="down") as caught:
            client_for(server).transcribe(WAV, mode="batch", max_retries=2)
        elapsed = time.monotonic() - started
    assert len(server.requests) == 3 and caught.value.status_code == 500
    assert elapsed < 0.5 + 1.0 + 2.0  # two jittered back-offs of at most 0.5 s and 1 s
    with BatchServer(Reply(status=429, body={"message": "later"})) as server:
        with pytest.raises(RateLimitError):
            client_for(server).transcribe(WAV, mode="batch", max_retries=0)
    assert len(server.requests) == 1


def test_a_reply_that_is_not_json_is_a_protocol_error():
    with BatchServer(Reply(body=b"<html>gateway</html>")) as server:
        with pytest.raises(ProtocolError, match="not JSON") as caught:
            client_for(server).transcribe(WAV, mode="batch")
    assert "gateway" in caught.value.raw


def test_a_reply_without_text_or_with_bad_words_is_a_protocol_error():
    for body in ({"type": "transcript"}, {"text": "a", "words": [{"word": "a", "start": "zero"}]}):
        with BatchServer(Reply(body=body)) as server, pytest.raises(ProtocolError):
            client_for(server).transcribe(WAV, mode="batch")


def test_a_huge_reply_is_refused_without_reading_it_all():
    with BatchServer(Reply(huge=200 * 1024 * 1024)) as server:
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="larger than 64 MiB"):
            client_for(server).transcribe(WAV, mode="batch")
        assert time.monotonic() - started < 20


def test_a_slow_reply_gives_up_within_its_timeout():
    body = b'{"type":"transcript","text":"' + b"z" * 200 + b'"}'
    with BatchServer(Reply(body=body, drip=1, drip_interval=0.1)) as server:
        started = time.monotonic()
        with pytest.raises(StreamTimeout):
            client_for(server).transcribe(WAV, mode="batch", timeout=0.5)
        # 0.5 s plus 10 s per MB of the 0.13 MB upload, and one more read
        assert time.monotonic() - started < 0.5 + 1.4 + 2
    with BatchServer(Reply(delay=5)) as server:
        started = time.monotonic()
        with pytest.raises(StreamTimeout, match="waiting for"):
            client_for(server).transcribe(WAV, mode="batch", timeout=0.5)
        assert time.monotonic() - started < 0.5 + 1.4 + 2


def test_a_server_that_is_not_there_is_a_connect_error_after_the_retries():
    with BatchServer() as server:
        base_url = server.base_url
    started = time.monotonic()
    with pytest.raises(cartesia_sync.ConnectError, match="cannot connect"):
        cartesia_sync.Client(base_url=base_url, api_key="k", load_entrypoints=False).transcribe(WAV, mode="batch")
    assert time.monotonic() - started < 5


def test_auto_uploads_whole_inputs_for_ink_whisper_and_streams_otherwise(server):
    """``server`` is the streaming fake; a client given its url= alone knows no batch route."""
    with BatchServer() as batch:
        client = client_for(batch)
        assert client.transcribe(WAV).mode == "batch"
        assert client.transcribe(b"\0" * 3200).mode == "batch"
        assert client_for(batch, model="ink-whisper-2025-06-04").transcribe(WAV).mode == "batch"
    assert len(batch.requests) == 3
    streamed = cartesia_sync.Client(url=server.url, load_entrypoints=False).transcribe(WAV)
    assert streamed.mode == "stream" and streamed.complete and streamed.language == "en"
    chunks = (b"\0" * 3200 for _ in range(5))
    assert cartesia_sync.Client(url=server.url, load_entrypoints=False).transcribe(chunks).audio_seconds == 0.5
    with pytest.raises(ConfigurationError, match="knows only the streaming URL"):
        cartesia_sync.Client(url=server.url, load_entrypoints=False).transcribe(WAV, mode="batch")


def test_auto_streams_a_model_outside_the_batch_family():
    with BatchServer() as batch:
        client = client_for(batch, model="ink-2")
        from cartesia_sync._modes import choose_mode

        assert choose_mode("auto", WAV, "ink-2", client.endpoints) == "stream"
        assert choose_mode("auto", WAV, "ink-whisper", client.endpoints) == "batch"
        assert choose_mode("stream", WAV, "ink-whisper", client.endpoints) == "stream"
    with pytest.raises(ConfigurationError, match="mode must be one of"):
        client.transcribe(WAV, mode="fast")
    with pytest.raises(ConfigurationError, match="whole input"):
        client.transcribe(iter([b"\0\0"]), mode="batch")


def test_the_module_function_takes_mode_and_client_arguments():
    with BatchServer() as server:
        result = cartesia_sync.transcribe(
            str(WAV), mode="batch", base_url=server.base_url, api_key="k", load_entrypoints=False
        )
    assert result.mode == "batch" and server.requests[0].headers["x-api-key"] == "k"


def test_progress_is_quiet_when_stderr_is_not_a_terminal_and_drawn_when_asked(capsys):
    with BatchServer() as server:
        client_for(server).transcribe(WAV, mode="batch")
        assert capsys.readouterr().err == ""
        client_for(server).transcribe(WAV, mode="batch", progress=True)
    assert "uploading" in capsys.readouterr().err


def test_after_the_upload_the_terminal_shows_how_long_the_server_has_been_transcribing(capsys):
    import threading

    with BatchServer(Reply(status=503, body={"message": "busy"}), Reply(delay=1.6)) as server:
        result = client_for(server).transcribe(WAV, mode="batch", progress=True, max_retries=1)
    err = capsys.readouterr().err
    assert result.text and err.count("uploading") >= 2  # the retry starts the upload bar again
    assert "waiting for the transcript: 00:00" in err and "waiting for the transcript: 00:01" in err
    assert not [t.name for t in threading.enumerate() if t.name == "cartesia-sync-batch-progress"]


@pytest.mark.parametrize("auth", ["header", "bearer", "query"])
def test_the_key_stays_out_of_debug_logs_and_urls(caplog, auth):
    """Over HTTP the key always goes in a header: ``auth="query"`` is for WebSockets (httpx logs URLs)."""
    caplog.set_level(logging.DEBUG)
    with BatchServer(Reply(status=500, body={"message": "x"}), Reply()) as server:
        client_for(server, api_key=CANARY_KEY, auth=auth).transcribe(WAV, mode="batch")
    assert all(
        CANARY_KEY in (r.headers.get("x-api-key", "") + r.headers.get("authorization", "")) for r in server.requests
    )
    assert all(r.query == [] for r in server.requests)
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "HTTP Request: POST" in text and "try 2 of 3" in text and CANARY_KEY not in text


@pytest.mark.parametrize(
    ("kwargs", "header", "value"),
    [
        ({"api_key": "sk_h"}, "x-api-key", "sk_h"),
        ({"api_key": "sk_b", "auth": "bearer"}, "authorization", "Bearer sk_b"),
        ({"api_key": None, "access_token": "tok_1"}, "authorization", "Bearer tok_1"),
    ],
)
def test_every_credential_form_over_http(kwargs, header, value):
    with BatchServer() as server:
        client_for(server, **kwargs).transcribe(WAV, mode="batch")
    request = server.requests[0]
    assert request.headers[header] == value and request.query == []
    assert not ({"x-api-key", "authorization"} - {header}) & set(request.headers)


def test_the_official_sdk_sends_the_same_form():
    cartesia = pytest.importorskip("cartesia")
    array = np.zeros(1600, dtype=np.int16)
    with BatchServer() as server:
        sdk = cartesia.Cartesia(api_key="sk_same", base_url=server.base_url, max_retries=0)
        with open(WAV, "rb") as handle:
            sdk.stt.transcribe(file=handle, model="ink-whisper", language="en", timestamp_granularities=["word"])
        sdk.stt.transcribe(
            file=array.tobytes(),
            model="ink-whisper",
            language="en",
            encoding="pcm_s16le",
            sample_rate=16000,
            timestamp_granularities=["word"],
        )
        ours = client_for(server, api_key="sk_same", auth="bearer")
        ours.transcribe(WAV, mode="batch")
        ours.transcribe(array, mode="batch")
    sdk_file, sdk_raw, our_file, our_raw = server.requests

    def form(request):
        return sorted((p.name, p.filename, p.content_type if p.filename else None, p.value) for p in request.parts)

    def normal(parts):  # the SDK and we guess the same type for a .wav; compare everything else exactly
        return [(n, f, v) for n, f, _, v in parts]

    assert normal(form(sdk_file)) == normal(form(our_file))
    assert form(sdk_raw) == form(our_raw)
    assert sdk_raw.query == our_raw.query == [("encoding", "pcm_s16le"), ("sample_rate", "16000")]
    for sdk_request, our_request in ((sdk_file, our_file), (sdk_raw, our_raw)):
        assert sdk_request.path == our_request.path == "/stt"
        assert sdk_request.headers["authorization"] == our_request.headers["authorization"] == "Bearer sk_same"
    assert TRANSCRIPT["text"] == "The quick brown fox."


def test_the_command_line_uploads_a_file_to_a_server_with_a_batch_route(tmp_path):
    """Unchanged, the CLI's transcribe goes through auto mode: with a base URL it uploads, its plugins included."""
    srt_path = tmp_path / "out.srt"
    with BatchServer() as server:
        env = clean_env(CARTESIA_API_KEY="sk_cli", CARTESIA_BASE_URL=server.base_url)
        done = subprocess.run(
            [sys.executable, "-m", "cartesia_sync", "transcribe", str(WAV), "--json", "--srt", str(srt_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["text"] == "The quick brown fox." and len(data["words"]) == 4
    assert server.requests[0].headers["x-api-key"] == "sk_cli" and server.requests[0].path == "/stt"
    assert "The quick brown fox." in srt_path.read_text()


def test_ctrl_c_while_the_server_transcribes_an_upload_exits_at_once_and_says_why_nothing_came(tmp_path):
    import signal

    with BatchServer(Reply(delay=30)) as server:
        env = clean_env(CARTESIA_API_KEY="sk_cli")
        command = [sys.executable, "-m", "cartesia_sync", "transcribe", str(WAV), "--base-url", server.base_url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.requests, "the upload never arrived"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)  # not the 30 s the server would take
    assert process.returncode == 130, err
    assert out == "" and "interrupted before the server's answer, which comes whole for an upload" in err
    assert err.strip().splitlines()[-1] == "cartesia-sync: interrupted"
