"""What the engine does when the server or the network misbehaves."""

from __future__ import annotations

import random
import socket

from captioner.errors import AuthError, ConnectionFailed, NoTermination, NotAStreamingServer
from captioner.client.reconnect import ReconnectPolicy
from captioner.client.session import SessionTimeouts
from captioner.urls import redact_url
from captioner import Secret, Settings
from captioner.testing import ServerThread
from captioner.testing.misbehaving import MisbehavingServer
from captioner.testing import ANY, Fault, TranscriptScript, close_at, drop_at, malformed_at
from conftest import fixture

MEETING = fixture("meeting.wav")
SCRIPT = TranscriptScript.load(fixture("meeting.json"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_malformed_message_is_reported_and_survived(replay):
    result = replay(MEETING, faults=[malformed_at(5000, "{broken"), malformed_at(9000, b"\x00binary")])
    assert result.error is None
    assert result.final_texts == SCRIPT.finals
    protocol_errors = [e for e in result.errors if e.kind == "protocol"]
    assert len(protocol_errors) == 2 and not any(e.fatal for e in protocol_errors)
    assert "malformed" in protocol_errors[0].message


def test_a_server_error_close_mid_meeting_is_resumed_and_nothing_is_lost(replay):
    result = replay(MEETING, faults=[close_at(20_000, 3005)])
    assert result.error is None
    assert result.final_texts == SCRIPT.finals  # each once: the resent turn is not repeated
    (reconnecting,) = [e for e in result.errors if e.kind == "server" or e.kind == "connection"]
    assert not reconnecting.fatal and reconnecting.code == 3005
    assert "3005 (server error)" in reconnecting.message and "reconnecting in" in reconnecting.message
    assert result.summary.reconnects == 1 and result.summary.ok
    first, second = result.server.connections
    assert first.close_code == 3005 and second.close_code == 1000
    sessions = result.recorder.sessions
    assert len(sessions) == 2 and sessions[1].offset_ms > 0  # the second session resumes mid-meeting
    times = [w.start_ms for turn in result.finals for w in turn.words]
    assert times == sorted(times)


def test_a_close_that_a_retry_cannot_fix_stops_at_once_keeping_the_finals(replay):
    result = replay(MEETING, faults=[close_at(20_000, 4002)])
    assert isinstance(result.error, AuthError) and result.error.code == 4002
    assert "4002 (insufficient funds)" in str(result.error)
    done_by_then = [t.plain_text for t in SCRIPT.turns if t.end + 400 <= 20_000]
    assert result.final_texts == done_by_then
    assert [(e.kind, e.code, e.fatal) for e in result.errors] == [("auth", 4002, True)]
    assert len(result.server.connections) == 1
    assert result.events[-1][0] == "meeting_end" and not result.summary.ok


def test_a_dropped_connection_is_resumed(replay):
    result = replay(MEETING, faults=[drop_at(3000)])
    assert result.error is None and result.final_texts == SCRIPT.finals
    assert "dropped without a close frame" in result.errors[0].message and not result.errors[0].fatal


def test_a_rejected_key_is_an_auth_error_without_the_key(replay):
    result = replay(fixture("hello.wav"), api_key="the-right-key", settings=Settings(credential=Secret("wrong-key-123")))
    assert isinstance(result.error, AuthError)
    assert "4001 (not authorized)" in str(result.error)
    assert "wrong-key-123" not in str(result.error) + repr(result.events)
    assert result.server.connections[0].headers["Authorization"] == "wrong-key-123"


def test_a_401_handshake_is_an_auth_error(replay):
    result = replay(fixture("hello.wav"), api_key="k", reject_with="http", settings=Settings(credential=Secret("bad")))
    assert isinstance(result.error, AuthError) and "HTTP 401" in str(result.error)


def test_nobody_listening_is_a_connection_failure_after_two_retries(tmp_path):
    from captioner.testing import replay_async
    import asyncio

    url = f"ws://127.0.0.1:{free_port()}/v3/ws"
    settings = Settings(reconnect=ReconnectPolicy(first_delay=0.01))
    result = asyncio.run(replay_async(fixture("hello.wav"), url, settings=settings))
    assert isinstance(result.error, ConnectionFailed)
    assert "connection refused" in str(result.error)
    assert [e.fatal for e in result.errors] == [True]  # the retries are quiet: one error, the last
    assert result.events[-1][0] == "meeting_end" and result.summary.session_ids == ()


def test_slow_replies_still_deliver_every_final(replay):
    result = replay(fixture("hello.wav"), reply_delay_ms=300)
    assert result.error is None and result.final_texts == TranscriptScript.load(fixture("hello.json")).finals


def test_no_termination_within_the_timeout_is_reported_once_with_what_may_be_missing(replay):
    settings = Settings(timeouts=SessionTimeouts(terminate=0.2))
    with ServerThread(MisbehavingServer("ignore-terminate")) as server:
        result = replay(fixture("hello.wav"), server=server, settings=settings)
    assert isinstance(result.error, NoTermination)
    assert "no Termination" in str(result.error) and "said nothing for 0.2 s" in str(result.error)
    assert "captions of the audio from 00:00.9 to 00:05.0 may be missing" in str(result.error)
    assert result.final_texts == ["hello there"] and server.connections == 1


def test_a_server_that_stops_beginning_sessions_mid_meeting_is_reconnected_within_the_limit(replay):
    """No Begin ends the run when no session ever began; mid-meeting it is one more drop."""
    settings = Settings(timeouts=SessionTimeouts(begin=0.3),
                        reconnect=ReconnectPolicy(max_attempts=2, first_delay=0.01, max_delay=0.01))
    with ServerThread(MisbehavingServer("stops-beginning")) as server:
        result = replay(fixture("hello.wav"), server=server, settings=settings)
    assert isinstance(result.error, NotAStreamingServer) and "never began a session" in str(result.error)
    assert server.connections == 3  # the first, then the two reconnects --max-reconnects 2 allows
    assert result.final_texts == ["hello there"]


def test_urls_lose_their_secrets_before_anyone_sees_them():
    assert redact_url("wss://u:pw@host/v3/ws?token=abc&sample_rate=16000") == "wss://***@host/v3/ws?token=***&sample_rate=16000"
    assert "abc" not in repr(Secret("abc")) + str(Secret("abc"))


def test_two_dozen_random_drops_lose_nothing_and_repeat_nothing(replay):
    """Seeded and reproducible: drops before Begin, mid-turn, between turns and during
    Terminate; the transcript must equal the undisturbed run's, word for word."""
    rng = random.Random(20261124)
    faults = [Fault("drop", when="connect", connection=0)]  # before Begin
    for connection in range(1, 23):
        action = rng.choice(["drop", "drop", "close"])
        faults.append(Fault(action, at_ms=rng.randint(300, 6000), code=rng.choice([1011, 1013, 3005, 3008]),
                            connection=connection))
    faults.append(Fault("drop", when="terminate", connection=ANY))  # while the last turn is flushed
    settings = Settings(reconnect=ReconnectPolicy(first_delay=0.001, max_delay=0.01, max_attempts=30,
                                                  first_session_attempts=5))
    disturbed = replay(MEETING, faults=faults, settings=settings)
    undisturbed = replay(MEETING)
    assert disturbed.error is None, disturbed.error
    words = lambda result: [(w.text, w.start_ms, w.end_ms) for t in result.finals for w in t.words]
    assert disturbed.final_texts == undisturbed.final_texts == SCRIPT.finals
    assert words(disturbed) == words(undisturbed)
    orders = [t.turn_order for t in disturbed.finals]
    assert orders == sorted(set(orders))  # increasing, never repeated
    connections = disturbed.server.connections
    assert len(connections) >= 24 and connections[-1].close_code == 1000
    assert disturbed.summary.reconnects == len(connections) - 2  # the drop before the first Begin is quiet
    assert disturbed.summary.audio_seconds_lost == 0 and disturbed.summary.ok
    assert not [f for f in disturbed.server.faults]  # every fault fired


def test_a_long_outage_drops_the_oldest_audio_and_says_how_much(replay):
    """A live source (here a paced replay) keeps producing while the service is away; the
    resend buffer holds 2 s, so the rest of the outage (15 refused attempts, at least
    0.1 s apart: 12 s of audio or more at 8x) is lost, and said to be."""
    faults = [drop_at(8000, connection=0)] + [
        Fault("close", code=1013, when="connect", connection=c) for c in range(1, 16)
    ]
    settings = Settings(resend_seconds=2.0,
                        reconnect=ReconnectPolicy(first_delay=0.2, max_delay=0.2, max_attempts=20))
    result = replay(MEETING, faults=faults, settings=settings, speed=8)
    assert result.error is None
    lost = [e for e in result.errors if e.kind == "audio"]
    assert lost and "audio was dropped" in lost[0].message and not lost[0].fatal
    assert result.summary.audio_seconds_lost > 5
    assert result.summary.reconnects == 16
    # What was not lost is captioned once, in order: each final is (the end of) a scripted
    # turn, words only go forward, and the turns of the gap are missing.
    assert all(any(script.endswith(final) for script in SCRIPT.finals) for final in result.final_texts)
    starts = [w.start_ms for t in result.finals for w in t.words]
    assert starts == sorted(starts) and len(starts) == len(set(starts))
    assert 0 < len(result.final_texts) < len(SCRIPT.finals)


def test_a_fast_replay_longer_than_the_resend_buffer_loses_nothing(replay):
    """A replay sent as fast as the server takes it waits for the network instead of
    reading ahead: however far the finals trail the sending, no audio is dropped."""
    result = replay(MEETING, settings=Settings(resend_seconds=5.0))
    assert result.error is None
    assert [e.message for e in result.errors if e.kind == "audio"] == []
    assert result.summary.audio_seconds_lost == 0
    assert result.final_texts == SCRIPT.finals
    assert result.server.connections[0].audio_bytes >= 59 * 32000
