"""The message parser: every known shape, leniency where the API drifted, and junk on any input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesia_sync import (
    Done,
    FlushDone,
    ProtocolError,
    ServerErrorEvent,
    Transcript,
    UnknownMessage,
    Word,
    parse_message,
)


def test_transcript_with_all_fields():
    event = parse_message(
        json.dumps(
            {
                "type": "transcript",
                "request_id": "r",
                "is_final": True,
                "text": " How are you doing today?",
                "duration": 1.1,
                "language": "en",
                "words": [{"word": "How", "start": 0.0, "end": 0.12}, {"word": "today?", "start": 0.58, "end": 0.78}],
            }
        )
    )
    assert isinstance(event, Transcript)
    assert event.text == " How are you doing today?"
    assert event.is_final and event.duration == 1.1 and event.language == "en" and event.request_id == "r"
    assert event.words == (Word("How", 0.0, 0.12), Word("today?", 0.58, 0.78))
    assert event.raw["type"] == "transcript"


def test_transcript_minimal_and_empty_text():
    event = parse_message('{"type": "transcript", "text": ""}')
    assert isinstance(event, Transcript) and event.text == "" and not event.is_final and event.words == ()


def test_bytes_input_is_decoded():
    assert isinstance(parse_message(b'{"type":"flush_done","request_id":"x"}'), FlushDone)


def test_done_and_flush_done():
    assert parse_message('{"type":"done","request_id":"a"}') == Done(request_id="a")
    assert parse_message('{"type":"flush_done"}') == FlushDone()


def test_unknown_type_is_passed_on():
    event = parse_message('{"type":"turn.start","request_id":"a"}')
    assert isinstance(event, UnknownMessage) and event.message_type == "turn.start"


def test_error_prefers_message_then_error_then_title():
    assert parse_message('{"type":"error","message":"m","error":"e","title":"t"}').message == "m"
    assert parse_message('{"type":"error","error":"e","title":"t"}').message == "e"
    assert parse_message('{"type":"error","title":"t"}').message == "t"
    assert "without a message" in parse_message('{"type":"error"}').message


def test_error_status_from_status_code_or_code():
    assert parse_message('{"type":"error","message":"m","status_code":400}').status_code == 400
    assert parse_message('{"type":"error","message":"m","code":503}').status_code == 503
    assert parse_message('{"type":"error","message":"m","code":"429"}').status_code == 429
    assert parse_message('{"type":"error","message":"m","code":true}').status_code is None


def test_error_done_false_is_not_fatal():
    assert parse_message('{"type":"error","message":"m","done":false}').fatal is False
    assert parse_message('{"type":"error","message":"m"}').fatal is True


def test_error_to_exception_keeps_every_field():
    event = parse_message(
        json.dumps(
            {
                "type": "error",
                "status_code": 400,
                "error_code": "model_not_found",
                "title": "Invalid model",
                "message": "not valid",
                "request_id": "r",
                "doc_url": "https://d",
            }
        )
    )
    error = event.to_exception()
    assert (error.status_code, error.error_code, error.title, error.request_id, error.doc_url) == (
        400,
        "model_not_found",
        "Invalid model",
        "r",
        "https://d",
    )
    assert str(error) == "server error (400 model_not_found): Invalid model: not valid"


def test_plain_text_title_message_error():
    event = parse_message("Unauthorized: invalid API key")
    assert isinstance(event, ServerErrorEvent) and event.title == "Unauthorized" and event.message == "invalid API key"


@pytest.mark.parametrize(
    "frame,fragment",
    [
        ("hello", "not JSON"),
        ("", "not JSON"),
        ("[1]", "not an object"),
        ("42", "not an object"),
        ('{"text": "x"}', "no string 'type'"),
        ('{"type": 5}', "no string 'type'"),
        ('{"type": "transcript", "text": 1}', "non-string 'text'"),
        ('{"type": "transcript", "is_final": 1}', "non-boolean"),
        ('{"type": "transcript", "words": {}}', "not a list"),
        ('{"type": "transcript", "words": [{"word": "a", "start": 0}]}', "word end"),
        ('{"type": "transcript", "words": [{"word": "a", "start": Infinity, "end": 1}]}', "not JSON"),
        ('{"type": "transcript", "duration": "1"}', "duration"),
        ('{"type": "done", "request_id": 5}', "request_id"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_messages_raise_protocol_error(frame, fragment):
    with pytest.raises(ProtocolError, match=fragment) as caught:
        parse_message(frame)
    assert caught.value.raw is not None


def test_protocol_error_raw_is_shortened():
    with pytest.raises(ProtocolError) as caught:
        parse_message("x" * 10_000)
    assert len(caught.value.raw) < 300


def test_events_are_frozen():
    event = parse_message('{"type":"transcript","text":"a"}')
    with pytest.raises(Exception):
        event.text = "b"  # type: ignore[misc]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["transcript", "flush_done", "done", "error"])},
            optional={
                "text": json_values,
                "is_final": json_values,
                "words": json_values,
                "duration": json_values,
                "message": json_values,
                "status_code": json_values,
                "request_id": json_values,
            },
        ).map(json.dumps),
    )
)
def test_parser_never_raises_anything_but_protocol_error(frame):
    try:
        event = parse_message(frame)
    except ProtocolError:
        return
    assert event.type in {"transcript", "flush_done", "done", "error", "unknown"}


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=4, max_size=4), data=st.binary(max_size=70))
def test_fast_masking_matches_the_reference(key, data):
    import websocket

    from cartesia_sync._frames import xor_mask

    assert xor_mask(key, data) == websocket.ABNF.mask(key, data)
    assert xor_mask(key, xor_mask(key, data)) == data
