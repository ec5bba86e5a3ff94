"""The v3 codec against ../shared/PROTOCOL.md, both directions, without sockets."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from captioner.errors import ProtocolError
from captioner.protocol import closecodes, codec, v3
from captioner.errors import UsageError
from captioner.protocol.messages import (
    Audio,
    Begin,
    ForceEndpoint,
    Ignored,
    KeepAlive,
    ServerErrorMessage,
    ServerWarning,
    SessionParams,
    Terminate,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
    WireWord,
)

TURN = {
    "type": "Turn",
    "turn_order": 3,
    "turn_is_formatted": False,
    "end_of_turn": True,
    "transcript": "hello world",
    "end_of_turn_confidence": 0.93,
    "words": [
        {"start": 100, "end": 400, "confidence": 0.9, "text": "hello", "word_is_final": True},
        {"start": 420, "end": 800, "confidence": 0.8, "text": "world", "word_is_final": True, "speaker": "A"},
    ],
    "speaker_label": "A",
}


def test_connect_url_adds_the_session_query_and_default_path():
    url = v3.connect_url("ws://127.0.0.1:9/", SessionParams(sample_rate=16000, format_turns=True, keyterms_prompt=("a b",)))
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == "/v3/ws"
    assert query["sample_rate"] == ["16000"]
    assert query["encoding"] == ["pcm_s16le"]
    assert query["format_turns"] == ["True"]  # the SDK's spelling of booleans
    assert json.loads(query["keyterms_prompt"][0]) == ["a b"]
    assert "speaker_labels" not in query


def test_connect_url_keeps_an_existing_query_and_path():
    url = v3.connect_url("wss://example.test/custom?token=abc", SessionParams(sample_rate=8000))
    parts = urlsplit(url)
    assert parts.path == "/custom"
    assert parse_qs(parts.query)["token"] == ["abc"]
    assert parse_qs(parts.query)["sample_rate"] == ["8000"]


@pytest.mark.parametrize("url", ["http://example.test/v3/ws", "not a url", "ws://"])
def test_connect_url_refuses_non_websocket_urls(url):
    with pytest.raises(ProtocolError):
        v3.connect_url(url, SessionParams(sample_rate=16000))


def test_auth_header_is_the_raw_credential():
    assert v3.auth_headers("key123") == {"Authorization": "key123"}
    assert v3.auth_headers(None) == {}


def test_client_messages_encode_as_documented():
    assert v3.encode_client(Audio(b"\x01\x02")) == b"\x01\x02"
    assert json.loads(v3.encode_client(Terminate())) == {"type": "Terminate"}
    assert json.loads(v3.encode_client(ForceEndpoint())) == {"type": "ForceEndpoint"}
    assert json.loads(v3.encode_client(KeepAlive())) == {"type": "KeepAlive"}
    update = json.loads(v3.encode_client(UpdateConfiguration({"max_turn_silence": 900, "format_turns": True})))
    assert update == {"type": "UpdateConfiguration", "max_turn_silence": 900, "format_turns": True}


def test_decode_turn():
    turn = v3.decode_server(json.dumps(TURN))
    assert isinstance(turn, TurnUpdate)
    assert turn.turn_order == 3 and turn.end_of_turn and not turn.is_formatted
    assert turn.transcript == "hello world"
    assert turn.words[1] == WireWord("world", 420, 800, 0.8, True, "A")
    assert turn.speaker == "A"


def test_decode_other_server_messages():
    begin = v3.decode_server('{"type": "Begin", "id": "abc", "expires_at": 1700000000}')
    assert isinstance(begin, Begin) and begin.session_id == "abc" and begin.expires_at.year == 2023
    iso = v3.decode_server('{"type": "Begin", "id": "abc", "expires_at": "2025-01-01T00:00:00Z"}')
    assert iso.expires_at.year == 2025
    assert v3.decode_server('{"type": "Termination", "audio_duration_seconds": 5, "session_duration_seconds": 6}') == Termination(5, 6)
    assert v3.decode_server('{"type": "Error", "error": "bad", "error_code": 3005}') == ServerErrorMessage("bad", 3005)
    assert v3.decode_server('{"error": "bare"}') == ServerErrorMessage("bare", None)
    assert v3.decode_server('{"type": "Warning", "warning": "w", "warning_code": 7}') == ServerWarning("w", 7)
    assert v3.decode_server('{"type": "SpeechStarted", "timestamp": 5}') == Ignored("SpeechStarted")
    assert v3.decode_server('{"type": "SomethingNew"}') == Ignored("SomethingNew")


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x01",
        "not json",
        "[1, 2]",
        "42",
        "{}",
        '{"type": 5}',
        '{"type": "Begin"}',
        '{"type": "Turn"}',
        json.dumps({**TURN, "turn_order": "3"}),
        json.dumps({**TURN, "turn_order": True}),
        json.dumps({**TURN, "end_of_turn": "yes"}),
        json.dumps({**TURN, "words": {"a": 1}}),
        json.dumps({**TURN, "words": [1]}),
        json.dumps({**TURN, "words": [{"text": "x", "start": 5}]}),
        json.dumps({**TURN, "words": [{"text": "x", "start": 500, "end": 10}]}),
        json.dumps({**TURN, "transcript": None}),
        '{"type": "Error", "error": 5}',
        '{"type": "Turn", "turn_order": NaN}',
        "[" * 100000,
    ],
)
def test_malformed_server_frames_raise_protocol_error_only(frame):
    with pytest.raises(ProtocolError):
        v3.decode_server(frame)


def test_server_messages_round_trip():
    turn = v3.decode_server(json.dumps(TURN))
    assert v3.decode_server(v3.encode_server(turn)) == turn
    termination = Termination(3, 4)
    assert v3.decode_server(v3.encode_server(termination)) == termination
    assert json.loads(v3.encode_server(Termination(None, None))) == {
        "type": "Termination", "audio_duration_seconds": 0, "session_duration_seconds": 0,
    }


def test_parse_query_reads_settings_and_keeps_unknown_ones():
    params = v3.parse_query("sample_rate=16000&format_turns=True&speaker_labels=true&min_turn_silence=300&whatever=1&keyterms_prompt=%5B%22x%22%5D")
    assert params.sample_rate == 16000 and params.format_turns and params.speaker_labels
    assert params.min_turn_silence == 300 and params.keyterms_prompt == ("x",)
    assert params.extra == {"whatever": "1"}
    assert v3.parse_query("sample_rate=8000&min_end_of_turn_silence_when_confident=160").min_turn_silence == 160


@pytest.mark.parametrize(
    "query, code",
    [
        ("", 4000),
        ("sample_rate=0", 4000),
        ("sample_rate=abc", 4000),
        ("sample_rate=16000&encoding=mp3", 3006),
        ("sample_rate=16000&format_turns=maybe", 3006),
        ("sample_rate=16000&min_turn_silence=soon", 3006),
        ("sample_rate=16000&keyterms_prompt=notjson", 3006),
    ],
)
def test_parse_query_rejects_with_the_service_close_code(query, code):
    with pytest.raises(v3.SessionRejected) as rejected:
        v3.parse_query(query)
    assert rejected.value.code == code


def test_decode_client_messages():
    assert v3.decode_client(b"\x00\x00") == Audio(b"\x00\x00")
    assert v3.decode_client('{"type": "Terminate"}') == Terminate()
    assert v3.decode_client('{"type": "ForceEndpoint"}') == ForceEndpoint()
    assert v3.decode_client('{"type": "KeepAlive"}') == KeepAlive()
    assert v3.decode_client('{"type": "UpdateConfiguration", "max_turn_silence": 500, "new": 1}') == UpdateConfiguration(
        {"max_turn_silence": 500, "new": 1}
    )


@pytest.mark.parametrize(
    "frame, code",
    [
        ("nope", 4100),
        ("[]", 4100),
        ('{"type": "Dance"}', 4101),
        ('{"type": "UpdateConfiguration", "max_turn_silence": "500"}', 4101),
        ('{"type": "UpdateConfiguration", "format_turns": 1}', 4101),
        ('{"type": "UpdateConfiguration", "min_turn_silence": true}', 4101),
    ],
)
def test_decode_client_rejects_with_close_codes(frame, code):
    with pytest.raises(v3.InvalidClientMessage) as invalid:
        v3.decode_client(frame)
    assert invalid.value.code == code


def test_close_code_descriptions_are_actionable():
    assert closecodes.describe(4001) == "closed with 4001 (not authorized); check ASSEMBLYAI_API_KEY (or the token)"
    assert "3005 (server error)" in closecodes.describe(3005, "boom")
    assert closecodes.describe(4999, "custom reason") == "closed with 4999 (custom reason)"
    assert 4001 in closecodes.NOT_RETRYABLE and 1013 not in closecodes.NOT_RETRYABLE


def test_unknown_protocol_is_a_usage_error():
    assert codec("v3") is v3
    with pytest.raises(UsageError, match="unknown protocol 'v9'"):
        codec("v9")
