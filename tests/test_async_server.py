"""The production streaming server (`StreamingServer`), as `async def` tests: the server
and a websockets client on one event loop, with a transcriber that only counts audio."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from captioner.protocol.messages import TurnUpdate
from captioner.server.streaming import ServerLimits, StreamingServer

pytestmark = pytest.mark.asyncio

CHUNK = b"\x01\x00" * 800  # 50 ms of 16 kHz 16-bit mono
TERMINATE = '{"type": "Terminate"}'


class CountingTranscriber:
    """Hears audio, and says how much in one final turn when the client terminates."""

    def __init__(self, params, emit):
        self.emit = emit
        self.heard = 0
        self.closed = False

    async def accept(self, pcm: bytes) -> None:
        self.heard += len(pcm)

    async def force_endpoint(self) -> None:
        pass

    async def update(self, settings: dict) -> None:
        pass

    async def finish(self) -> None:
        self.emit(TurnUpdate(turn_order=0, transcript=f"{self.heard} bytes", words=(), end_of_turn=True))

    async def close(self) -> None:
        self.closed = True


def counting_server(**limits) -> tuple[StreamingServer, list[CountingTranscriber]]:
    transcribers: list[CountingTranscriber] = []

    def new(params, emit):
        transcribers.append(CountingTranscriber(params, emit))
        return transcribers[-1]

    return StreamingServer(new, limits=ServerLimits(**limits)), transcribers


async def converse(url: str, *frames, query: str = "sample_rate=16000") -> tuple[list[dict], int, str]:
    """Send `frames`, then read what the server says until it closes: (messages, code, reason)."""
    received = []
    async with connect(f"{url}?{query}") as ws:
        for frame in frames:
            await ws.send(frame)
        try:
            async for frame in ws:
                received.append(json.loads(frame))
        except ConnectionClosed:
            pass
    return received, ws.close_code, ws.close_reason


async def test_terminate_flushes_the_last_turn_then_termination_then_1000():
    server, transcribers = counting_server()
    async with server:
        messages, code, _ = await converse(server.url, *[CHUNK] * 40, TERMINATE)
    assert [m["type"] for m in messages] == ["Begin", "Turn", "Termination"]
    assert messages[1]["transcript"] == f"{40 * len(CHUNK)} bytes" and messages[1]["end_of_turn"]
    assert messages[2]["audio_duration_seconds"] == 2  # 40 chunks of 50 ms
    assert code == 1000
    assert transcribers[0].closed and server.active_sessions == 0


@pytest.mark.parametrize("milliseconds", [10, 1200])
async def test_a_chunk_outside_50_to_1000_ms_closes_with_3007(milliseconds):
    server, transcribers = counting_server()
    async with server:
        messages, code, reason = await converse(server.url, CHUNK, b"\x00\x00" * (16 * milliseconds))
    assert code == 3007
    assert reason == f"Audio chunk duration violation: {milliseconds:.1f} ms; send 50 to 1000 ms per message"
    assert [m["type"] for m in messages] == ["Begin"]
    assert transcribers[0].heard == len(CHUNK)  # the good chunk before it was heard, the bad one not


async def test_sessions_beyond_the_limit_get_3009_while_the_first_is_open():
    server, _ = counting_server(max_sessions=1)
    async with server:
        async with connect(server.url + "?sample_rate=16000") as first:
            assert json.loads(await first.recv())["type"] == "Begin"
            _, code, reason = await converse(server.url)
            assert (code, reason) == (3009, "Too many concurrent sessions")
            await first.send(TERMINATE)
            async for _ in first:
                pass
        # The first one left: room again.
        messages, code, _ = await converse(server.url, TERMINATE)
    assert code == 1000 and messages[-1]["type"] == "Termination"


async def test_a_silent_client_is_closed_with_4031_after_the_idle_timeout():
    server, _ = counting_server(idle_timeout=0.2)
    async with server:
        started = time.monotonic()
        messages, code, reason = await converse(server.url, CHUNK)
        waited = time.monotonic() - started
    assert (code, reason) == (4031, "Session idle for too long")
    assert 0.2 <= waited < 2
    assert [m["type"] for m in messages] == ["Begin"]


async def test_audio_past_the_session_limit_closes_with_3008():
    server, transcribers = counting_server(max_session_seconds=0.2)
    async with server:
        async with connect(server.url + "?sample_rate=16000") as ws:
            assert json.loads(await ws.recv())["type"] == "Begin"
            await ws.send(CHUNK)
            await asyncio.sleep(0.3)
            await ws.send(CHUNK)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    assert (ws.close_code, ws.close_reason) == (3008, "Maximum session duration exceeded")
    assert transcribers[0].heard == len(CHUNK)
