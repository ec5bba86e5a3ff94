"""The fake server, driven by a plain websockets client: what it sends, when, and its faults."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript, close_at, drop_at, malformed_at
from captioner.server.streaming import ServerLimits
from captioner.testing.player import ScriptPlayer
from captioner.protocol.messages import SessionParams
from conftest import converse, fixture

SCRIPT = TranscriptScript.from_dict(
    {
        "turns": [
            {"speaker": "A", "text": "Hello there.", "words": [
                {"text": "hello", "formatted": "Hello", "start": 100, "end": 300},
                {"text": "there", "formatted": "there.", "start": 350, "end": 600},
            ]},
            {"speaker": "B", "words": [{"text": "yes", "start": 2000, "end": 2200}]},
        ]
    }
)
MS = 32  # bytes of 16 kHz 16-bit audio per millisecond


def silence(ms: int) -> bytes:
    return b"\x00" * (ms * MS)


@pytest.fixture
def server(request):
    # Most tests here send long chunks for brevity; the chunk limits have their own test.
    options = {"limits": ServerLimits(chunk_ms=None), **getattr(request, "param", {})}
    with FakeServerThread(FakeStreamingServer(SCRIPT, **options)) as running:
        yield running


def turns(messages):
    return [(m["turn_order"], m["end_of_turn"], m["turn_is_formatted"], m["transcript"]) for m in messages if m["type"] == "Turn"]


def test_partials_as_words_pass_and_finals_after_the_turn_silence(server):
    messages, code, _ = converse(server.url, [silence(700), silence(600), silence(1500), '{"type": "Terminate"}'])
    assert messages[0]["type"] == "Begin" and isinstance(messages[0]["id"], str)
    assert isinstance(messages[0]["expires_at"], int)
    assert turns(messages) == [
        (0, False, False, ""),  # the newest word is not settled yet
        (0, False, False, "hello"),
        (0, True, False, "hello there"),
        (1, False, False, ""),
        (1, True, False, "yes"),  # flushed by Terminate before its silence passed
    ]
    assert messages[-1] == {"type": "Termination", "audio_duration_seconds": 2, "session_duration_seconds": 0}
    assert code == 1000
    final = [m for m in messages if m["type"] == "Turn" and m["end_of_turn"]][0]
    assert [(w["text"], w["start"], w["end"], w["word_is_final"]) for w in final["words"]] == [
        ("hello", 100, 300, True), ("there", 350, 600, True)]
    assert "speaker_label" not in final  # only when the client asks for labels


def test_formatting_and_speaker_labels_when_asked(server):
    messages, _, _ = converse(
        server.url, [silence(1100), '{"type": "Terminate"}'], query="sample_rate=16000&format_turns=True&speaker_labels=true"
    )
    finals = [m for m in messages if m["type"] == "Turn" and m["end_of_turn"]]
    assert [(m["turn_is_formatted"], m["transcript"]) for m in finals] == [(False, "hello there"), (True, "Hello there.")]
    assert all(m["speaker_label"] == "A" for m in finals)
    assert [w["text"] for w in finals[1]["words"]] == ["Hello", "there."]


def test_force_endpoint_and_update_configuration(server):
    messages, _, _ = converse(
        server.url,
        [silence(320), '{"type": "ForceEndpoint"}', '{"type": "UpdateConfiguration", "min_turn_silence": 100}',
         silence(500), silence(2000), '{"type": "Terminate"}'],
    )
    assert [t for t in turns(messages) if t[1]] == [(0, True, False, "hello"), (1, True, False, "there"), (2, True, False, "yes")]
    record = server.connections[0]
    assert json.loads(record.received(str)[1]) == {"type": "UpdateConfiguration", "min_turn_silence": 100}


def test_it_records_every_frame_and_the_audio(server):
    audio = bytes(range(256)) * 10
    converse(server.url, [audio, '{"type": "KeepAlive"}', '{"type": "Terminate"}'], headers={"Authorization": "k"})
    record = server.connections[0]
    record.finished.wait(5)
    assert bytes(record.audio) == audio
    assert record.received(bytes) == [audio]
    assert record.received(str) == ['{"type": "KeepAlive"}', '{"type": "Terminate"}']
    assert record.headers["Authorization"] == "k"
    assert record.params.sample_rate == 16000
    assert record.sent_messages()[0]["type"] == "Begin" and record.close_code == 1000


@pytest.mark.parametrize(
    "query, code",
    [("", 4000), ("sample_rate=16000&encoding=flac", 3006), ("sample_rate=16000&unknown_thing=1", 1000)],
)
def test_bad_session_settings_close_with_the_service_code(server, query, code):
    _, close_code, _ = converse(server.url, ['{"type": "Terminate"}'], query=query)
    assert close_code == code


def test_invalid_client_messages_close_with_4100_and_4101(server):
    assert converse(server.url, ["{nope"])[1] == 4100
    assert converse(server.url, ['{"type": "Dance"}'])[1] == 4101


@pytest.mark.parametrize("server", [{"api_key": "right"}], indirect=True)
def test_a_wrong_key_is_closed_with_4001(server):
    messages, code, reason = converse(server.url, [], headers={"Authorization": "wrong"})
    assert (messages, code, reason) == ([], 4001, "Not Authorized")
    messages, code, _ = converse(server.url, ['{"type": "Terminate"}'], headers={"Authorization": "right"})
    assert code == 1000 and messages[0]["type"] == "Begin"


def test_a_wrong_key_can_be_refused_at_the_handshake():
    with FakeServerThread(FakeStreamingServer(SCRIPT, api_key="right", reject_with="http")) as server:
        with pytest.raises(InvalidStatus) as refused:
            connect(server.url + "?sample_rate=16000", additional_headers={"Authorization": "wrong"})
        assert refused.value.response.status_code == 401


def test_unknown_paths_get_404(server):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url.replace("/v3/ws", "/v2/nothing"))
    assert refused.value.response.status_code == 404


@pytest.mark.parametrize("server", [{"faults": [close_at(500, 3005), malformed_at(0, "garbage")]}], indirect=True)
def test_faults_fire_at_their_audio_time(server):
    messages = []
    with connect(server.url + "?sample_rate=16000") as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "Begin"
        assert ws.recv(timeout=5) == "garbage"
        ws.send(silence(400))
        messages.append(json.loads(ws.recv(timeout=5)))  # the partial for "hello"
        ws.send(silence(200))
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
    assert ws.close_code == 3005 and ws.close_reason == "server error"
    assert messages[0]["transcript"] == ""


@pytest.mark.parametrize("server", [{"faults": [drop_at(100)]}], indirect=True)
def test_drop_closes_without_a_close_frame(server):
    with connect(server.url + "?sample_rate=16000") as ws:
        ws.recv(timeout=5)
        ws.send(silence(200))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1006


def test_player_on_the_fixture_meeting_gives_every_turn_once():
    script = TranscriptScript.load(fixture("meeting.json"))
    player = ScriptPlayer(script, SessionParams(sample_rate=16000))
    updates = []
    for ms in range(0, 70_000, 50):
        updates += player.advance(ms)
    finals = [u.transcript for u in updates if u.end_of_turn]
    assert finals == script.finals
    assert player.force_endpoint() == []


@pytest.mark.parametrize("min_silence, final_at", [(None, 1000), (200, 800), (0, 600)])
def test_the_final_waits_for_min_turn_silence(min_silence, final_at):
    # "there" ends at 600 ms; the service's default turn silence is 400 ms.
    player = ScriptPlayer(SCRIPT, SessionParams(sample_rate=16000, min_turn_silence=min_silence))
    assert not any(u.end_of_turn for u in player.advance(final_at - 1))
    assert [u.transcript for u in player.advance(final_at) if u.end_of_turn] == ["hello there"]


def test_time_is_received_audio_at_the_session_sample_rate(server):
    # 8000 bytes are 500 ms at 8 kHz (past "hello", which ends at 300 ms) but 250 ms at 16 kHz.
    frames = [b"\x00" * 8000, '{"type": "Terminate"}']
    at_8k, _, _ = converse(server.url, frames, query="sample_rate=8000")
    at_16k, _, _ = converse(server.url, frames, query="sample_rate=16000")
    assert [t[3] for t in turns(at_8k) if t[1]] == ["hello"]
    assert [t[3] for t in turns(at_16k) if t[1]] == []


@pytest.mark.parametrize(
    "frame, code",
    [(silence(40), 3007), (silence(1001), 3007), (b"\x00" * 1601, 3006), (silence(50), 1000), (silence(1000), 1000)],
)
def test_audio_chunks_are_checked_as_the_service_does(frame, code):
    with FakeServerThread(FakeStreamingServer(SCRIPT)) as server:
        _, close_code, reason = converse(server.url, [frame, '{"type": "Terminate"}'])
    assert close_code == code, reason


def test_a_flood_of_json_messages_is_cut_off_but_audio_is_not_counted():
    with FakeServerThread(FakeStreamingServer(SCRIPT, limits=ServerLimits(max_control_per_second=10))) as server:
        _, code, reason = converse(server.url, ['{"type": "KeepAlive"}'] * 20)
        assert code == 1008 and "at most 10 JSON messages a second" in reason
        audio_only, code, _ = converse(server.url, [silence(50)] * 40 + ['{"type": "Terminate"}'])
        assert code == 1000


def test_sessions_beyond_the_limit_get_3009():
    with FakeServerThread(FakeStreamingServer(SCRIPT, limits=ServerLimits(max_sessions=1))) as server:
        with connect(server.url + "?sample_rate=16000") as first:
            assert json.loads(first.recv(timeout=5))["type"] == "Begin"
            _, code, reason = converse(server.url, [])
            assert code == 3009 and reason == "Too many concurrent sessions"
        _, code, _ = converse(server.url, ['{"type": "Terminate"}'])
        assert code == 1000  # the first one left: room again


def test_audio_that_is_not_the_reference_is_taken_to_start_at_zero():
    """Another file than the script's WAV: the server cannot place it, and counts from 0."""
    from captioner.testing.fake_server import ScriptTranscriber

    emitted = []
    reference = (b"\x01\x00\x02\x00" * 8000) + bytes(16000)
    transcriber = ScriptTranscriber(SCRIPT, SessionParams(sample_rate=16000), emitted.append, reference)

    async def feed():
        for _ in range(12):
            await transcriber.accept(b"\x07\x00" * 800)  # sound nowhere in the reference
        await transcriber.finish()

    import asyncio

    asyncio.run(feed())
    assert transcriber.player is not None and transcriber.player.origin_ms == 0
    assert [u.transcript for u in emitted if u.end_of_turn] == ["hello there"]
