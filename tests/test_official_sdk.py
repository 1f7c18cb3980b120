"""The official ``cartesia`` SDK (4.x), unmodified, against the local server's one base URL.

It derives every route from ``base_url``: ``POST /stt`` for ``stt.transcribe``
and ``ws://.../stt/websocket`` for ``stt.manual_finalize.websocket``; both
must work against ``LocalServer.base_url`` with the real pocketsphinx engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
from conftest import CANARY_KEY

from cartesia_sync.local import LocalServer

cartesia = pytest.importorskip("cartesia")

pytestmark = pytest.mark.timeout(60)

WAV = Path(__file__).parent / "data" / "utt01.wav"


@pytest.fixture
def server():
    with LocalServer("pocketsphinx", api_key=CANARY_KEY, load_entrypoints=False) as running:
        yield running


def sdk(server: LocalServer, **kwargs):
    kwargs.setdefault("api_key", CANARY_KEY)
    return cartesia.Cartesia(base_url=server.base_url, max_retries=0, **kwargs)


def test_stt_transcribe_uploads_a_file(server):
    with open(WAV, "rb") as handle:
        result = sdk(server).stt.transcribe(
            file=handle, model="ink-whisper", language="en", timestamp_granularities=["word"]
        )
    assert "weather" in result.text
    assert result.duration == pytest.approx(soundfile.info(str(WAV)).duration, abs=0.01)
    assert [w.word for w in result.words] == result.text.split()
    assert result.request_id


def test_stt_transcribe_raw_pcm_with_encoding(server):
    audio, rate = soundfile.read(str(WAV), dtype="int16")
    result = sdk(server).stt.transcribe(
        file=audio.tobytes(), model="ink-whisper", encoding="pcm_s16le", sample_rate=rate
    )
    assert "weather" in result.text
    assert result.words is None  # words only when asked


def test_a_wrong_key_is_the_sdks_authentication_error(server):
    with pytest.raises(cartesia.AuthenticationError) as caught, open(WAV, "rb") as handle:
        sdk(server, api_key="sk_wrong").stt.transcribe(file=handle, model="ink-whisper")
    assert caught.value.status_code == 401
    assert CANARY_KEY not in str(caught.value)


def test_a_token_minted_by_the_sdk_transcribes(server):
    token = sdk(server).access_token.create(grants={"stt": True}, expires_in=60).token
    with open(WAV, "rb") as handle:
        result = sdk(server, api_key=None, token=token).stt.transcribe(file=handle, model="ink-whisper")
    assert "weather" in result.text


def test_manual_finalize_websocket_streams(server):
    audio, rate = soundfile.read(str(WAV), dtype="int16")
    pcm = audio.tobytes()
    finals: list[str] = []
    events: list[str] = []
    with sdk(server).stt.manual_finalize.websocket(
        encoding="pcm_s16le", model="ink-whisper", sample_rate=rate, language="en"
    ) as connection:
        step = rate // 10 * 2  # 100 ms
        for start in range(0, len(pcm), step):
            connection.send_raw(pcm[start : start + step])
        connection.send("finalize")
        connection.send("close")
        for event in connection:
            events.append(event.type)
            if event.type == "transcript" and event.is_final:
                finals.append(event.text)
            if event.type == "done":
                break
    assert "flush_done" in events and events[-1] == "done"
    assert "weather" in "".join(finals)
