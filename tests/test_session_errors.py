"""What the engine does when the server or the network misbehaves."""

from __future__ import annotations

import socket

from captioner.errors import AuthError, ConnectionFailed, ServerError
from captioner.session import SessionTimeouts
from captioner.urls import redact_url
from captioner.settings import Secret, Settings
from captioner.testing import TranscriptScript, close_at, drop_at, malformed_at
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


def test_a_server_close_mid_meeting_keeps_the_finals_so_far_and_reports_the_code(replay):
    result = replay(MEETING, faults=[close_at(20_000, 3005)])
    assert isinstance(result.error, ServerError) and result.error.code == 3005
    assert "3005 (server error)" in str(result.error)
    done_by_then = [t.plain_text for t in SCRIPT.turns if t.end + 400 <= 20_000]
    assert result.final_texts == done_by_then
    fatal = [e for e in result.errors if e.fatal]
    assert [(e.kind, e.code) for e in fatal] == [("server", 3005)]
    assert result.events[-1][0] == "session_end" and not result.summary.ok


def test_a_dropped_connection_is_a_connection_failure(replay):
    result = replay(MEETING, faults=[drop_at(3000)])
    assert isinstance(result.error, ConnectionFailed)
    assert "dropped without a close frame" in str(result.error)


def test_a_rejected_key_is_an_auth_error_without_the_key(replay):
    result = replay(fixture("hello.wav"), api_key="the-right-key", settings=Settings(credential=Secret("wrong-key-123")))
    assert isinstance(result.error, AuthError)
    assert "4001 (not authorized)" in str(result.error)
    assert "wrong-key-123" not in str(result.error) + repr(result.events)
    assert result.server.connections[0].headers["Authorization"] == "wrong-key-123"


def test_a_401_handshake_is_an_auth_error(replay):
    result = replay(fixture("hello.wav"), api_key="k", reject_with="http", settings=Settings(credential=Secret("bad")))
    assert isinstance(result.error, AuthError) and "HTTP 401" in str(result.error)


def test_nobody_listening_is_a_connection_failure(tmp_path):
    from captioner.testing import replay_async
    import asyncio

    url = f"ws://127.0.0.1:{free_port()}/v3/ws"
    result = asyncio.run(replay_async(fixture("hello.wav"), url))
    assert isinstance(result.error, ConnectionFailed)
    assert "connection refused" in str(result.error)
    assert result.events[-1][0] == "session_end"


def test_slow_replies_still_deliver_every_final(replay):
    result = replay(fixture("hello.wav"), reply_delay_ms=300)
    assert result.error is None and result.final_texts == TranscriptScript.load(fixture("hello.json")).finals


def test_no_termination_within_the_timeout_is_reported(replay):
    settings = Settings(timeouts=SessionTimeouts(terminate=0.2))
    result = replay(fixture("hello.wav"), reply_delay_ms=2000, settings=settings)
    assert isinstance(result.error, ConnectionFailed)
    assert "no Termination" in str(result.error) and "said nothing for 0.2 s" in str(result.error)


def test_urls_lose_their_secrets_before_anyone_sees_them():
    assert redact_url("wss://u:pw@host/v3/ws?token=abc&sample_rate=16000") == "wss://***@host/v3/ws?token=***&sample_rate=16000"
    assert "abc" not in repr(Secret("abc")) + str(Secret("abc"))
