"""The client's asynchronous parts, as `async def` tests on one event loop with the fake
server (the `fake_server_async` fixture): a session, the audio pump, the engine."""

from __future__ import annotations

import asyncio

import pytest
import soundfile

from captioner.audio.replay import WavReplaySource
from captioner.client.engine import Engine
from captioner.client.pump import AudioPump
from captioner.client.session import MalformedFrame, StreamingSession
from captioner.client.settings import Settings
from captioner.errors import AuthError
from captioner.plugins.manager import build_plugin_manager
from captioner.protocol import v3
from captioner.protocol.messages import Begin, ForceEndpoint, SessionParams, Termination, TurnUpdate
from captioner.testing import EventRecorder, TranscriptScript, close_at, malformed_at
from conftest import fixture

pytestmark = pytest.mark.asyncio

HELLO, MEETING = fixture("hello.wav"), fixture("meeting.wav")
HELLO_SCRIPT, MEETING_SCRIPT = fixture("hello.json"), fixture("meeting.json")
HELLO_FINALS = TranscriptScript.load(HELLO_SCRIPT).finals
MEETING_FINALS = TranscriptScript.load(MEETING_SCRIPT).finals
CHUNK = 1600  # 50 ms of 16 kHz 16-bit mono


async def wav_chunks(path, speed: float | None = None):
    async for chunk in WavReplaySource(path, speed=speed).chunks():
        yield chunk


async def eventually(condition, timeout: float = 5.0) -> None:
    """Wait, on this loop, until `condition()` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


# ----------------------------------------------------------------- the session


async def test_a_session_sends_the_audio_and_reads_every_turn_to_termination(fake_server_async):
    server = await fake_server_async(HELLO_SCRIPT)
    session = StreamingSession(v3, server.base_url, SessionParams())
    messages = []
    await session.run(wav_chunks(HELLO), messages.append)

    assert isinstance(messages[0], Begin) and isinstance(messages[-1], Termination)
    turns = [m for m in messages if isinstance(m, TurnUpdate)]
    assert [t.transcript for t in turns if t.end_of_turn] == HELLO_FINALS
    assert any(not t.end_of_turn for t in turns)  # partials came first
    assert session.began and session.terminated and session.terminate_sent
    (connection,) = server.connections
    assert session.bytes_sent == len(connection.audio) == len(b"".join([c async for c in wav_chunks(HELLO)]))
    assert connection.received(str)[-1] == '{"type": "Terminate"}'
    assert connection.close_code == 1000


async def test_a_malformed_frame_reaches_the_caller_and_the_session_goes_on(fake_server_async):
    server = await fake_server_async(HELLO_SCRIPT, faults=[malformed_at(1000, "{broken")])
    session = StreamingSession(v3, server.base_url, SessionParams())
    messages = []
    await session.run(wav_chunks(HELLO), messages.append)
    (malformed,) = [m for m in messages if isinstance(m, MalformedFrame)]
    assert "not JSON: {broken" in str(malformed.error)
    assert isinstance(messages[-1], Termination)
    assert [m.transcript for m in messages if isinstance(m, TurnUpdate) and m.end_of_turn] == HELLO_FINALS


async def test_a_close_code_becomes_the_sessions_error(fake_server_async):
    server = await fake_server_async(HELLO_SCRIPT, faults=[close_at(1000, 4002)])
    session = StreamingSession(v3, server.base_url, SessionParams())
    with pytest.raises(AuthError) as raised:
        await session.run(wav_chunks(HELLO), lambda message: None)
    assert raised.value.code == 4002 and "insufficient funds" in str(raised.value)
    assert not session.terminated
    (connection,) = server.connections
    assert connection.close_code == 4002 and len(connection.audio) == 32_000  # closed at 1000 ms


async def test_a_control_message_goes_out_beside_the_audio(fake_server_async):
    server = await fake_server_async(HELLO_SCRIPT)
    session = StreamingSession(v3, server.base_url, SessionParams())
    assert not session.control(ForceEndpoint())  # not connected: nobody to tell
    sent = []

    def on_message(message):
        if isinstance(message, Begin):
            sent.append(session.control(ForceEndpoint()))

    await session.run(wav_chunks(HELLO, speed=10), on_message)
    assert sent == [True]
    frames = server.connections[0].received(str)
    assert frames == ['{"type": "ForceEndpoint"}', '{"type": "Terminate"}']
    assert not session.control(ForceEndpoint())  # terminated: dropped


# ----------------------------------------------------------------- the audio pump


class FakeSource:
    """`count` chunks of 50 ms, chunk n all bytes n; live (a microphone) or not (a replay)."""

    sample_rate, chunk_ms, description = 16000, 50, "fake"

    def __init__(self, count: int | None, *, live: bool, fail_at: int | None = None):
        self.count, self.live, self.fail_at = count, live, fail_at
        self.stopped = False

    async def chunks(self):
        n = 0
        while self.count is None or n < self.count:
            if n == self.fail_at:
                raise OSError("the device went away")
            yield chunk(n)
            n += 1
            await asyncio.sleep(0.001 if self.count is None else 0)

    def stop(self):
        self.stopped = True


def chunk(n: int) -> bytes:
    return bytes([n % 256]) * CHUNK


async def drain(pump: AudioPump) -> list[bytes]:
    async with asyncio.timeout(5):
        return [c async for c in pump.session_chunks()]


async def test_the_pump_resends_only_what_has_no_final_after_a_rewind():
    pump = AudioPump(FakeSource(10, live=True))
    pump.start()
    try:
        assert await drain(pump) == [chunk(n) for n in range(10)]
        assert pump.unfinished_ms() == 500

        pump.finalized(200)  # finals up to 200 ms: chunks 0-3 need not be resent
        assert pump.unfinished_ms() == 300
        assert pump.rewind() == 200  # the next session's clock starts there
        pump.finalized(500)  # a late final from before the rewind: nothing resent yet, nothing dropped
        assert pump.unfinished_ms() == 300
        assert await drain(pump) == [chunk(n) for n in range(4, 10)]
    finally:
        await pump.close()


async def test_a_replay_is_read_only_so_far_ahead_of_what_was_sent():
    pump = AudioPump(FakeSource(60, live=False), ahead_seconds=0.2)
    pump.start()
    try:
        await eventually(lambda: pump.read_ms >= 250)
        await asyncio.sleep(0.05)
        assert pump.read_ms == 250  # 200 ms waiting to be sent, and the chunk that crossed it
        received = []
        async for piece in pump.session_chunks():
            received.append(piece)
            await asyncio.sleep(0)
            assert pump.read_ms - 50 * len(received) <= 250
        assert received == [chunk(n) for n in range(60)] and pump.lost_ms == 0
    finally:
        await pump.close()


async def test_a_live_source_keeps_reading_during_an_outage_and_reports_what_it_drops():
    losses = []
    pump = AudioPump(FakeSource(40, live=True), max_seconds=1.0, on_loss=lambda now, total: losses.append(total))
    pump.start()  # and no session reads: the connection is down
    try:
        await eventually(lambda: pump.finished)
        assert pump.read_ms == 2000 and pump.lost_ms == 1000
        assert losses[-1] == 1.0 and losses == sorted(losses)
        assert pump.rewind() == 1000
        assert await drain(pump) == [chunk(n) for n in range(20, 40)]
    finally:
        await pump.close()


async def test_a_failing_source_ends_the_sessions_audio_and_keeps_its_error():
    pump = AudioPump(FakeSource(10, live=True, fail_at=3))
    pump.start()
    try:
        assert await drain(pump) == [chunk(n) for n in range(3)]
        assert isinstance(pump.error, OSError) and "went away" in str(pump.error)
    finally:
        await pump.close()


async def test_stopping_the_pump_ends_an_endless_source_after_what_was_read():
    source = FakeSource(None, live=True)
    pump = AudioPump(source)
    pump.start()
    try:
        chunks = pump.session_chunks()
        first = [await anext(chunks) for _ in range(3)]
        pump.stop()
        rest = [c async for c in chunks]
        assert source.stopped and pump.finished
        assert first + rest == [chunk(n) for n in range(3 + len(rest))]
        assert pump.read_ms == 50 * (3 + len(rest))
    finally:
        await pump.close()


# ----------------------------------------------------------------- the engine


def engine_for(server, recorder: EventRecorder) -> Engine:
    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    pm.register(recorder, name="event-recorder")
    return Engine(Settings(url=server.base_url), pm)


async def test_the_engine_captions_a_meeting_to_its_plugins(fake_server_async):
    server = await fake_server_async(MEETING_SCRIPT)
    recorder = EventRecorder()
    summary = await engine_for(server, recorder).caption(WavReplaySource(MEETING, speed=None))

    assert recorder.final_texts == MEETING_FINALS
    assert recorder.problems(soundfile.info(str(MEETING)).duration * 1000) == []
    assert summary.ok and summary.finals == len(MEETING_FINALS) and summary.reconnects == 0
    assert recorder.events[-1] == ("meeting_end", summary)
    assert [s.id for s in recorder.sessions] == [server.connections[0].session_id]


async def test_the_engine_stops_early_and_still_delivers_the_last_finals(fake_server_async):
    server = await fake_server_async(MEETING_SCRIPT)
    recorder = EventRecorder()
    engine = engine_for(server, recorder)
    assert not engine.control(ForceEndpoint())  # no meeting yet
    meeting = asyncio.create_task(engine.caption(WavReplaySource(MEETING, speed=20)))

    await eventually(lambda: recorder.finals)
    assert engine.control(ForceEndpoint())
    engine.stop()
    summary = await asyncio.wait_for(meeting, 10)

    (connection,) = server.connections
    assert '{"type": "ForceEndpoint"}' in connection.received(str)
    assert connection.received(str)[-1] == '{"type": "Terminate"}' and connection.close_code == 1000
    assert len(connection.audio) < soundfile.info(str(MEETING)).frames  # not half of it was sent
    assert summary.ok and summary.finals == len(recorder.finals)
    # Every word heard, once and in order (a forced endpoint splits a turn), and not all of them.
    said, script = " ".join(recorder.final_texts), " ".join(MEETING_FINALS)
    assert script.startswith(said + " ") and len(said) < len(script) / 2
    assert recorder.problems() == []
