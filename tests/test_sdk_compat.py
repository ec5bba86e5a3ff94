"""The official AssemblyAI SDK (v3, sync and async clients) against the fake server.

If our fake drifted from the real protocol (a missing field, a wrong type), the SDK's
pydantic models would reject its messages and these tests would see errors.
"""

from __future__ import annotations

import asyncio

import soundfile
from assemblyai.streaming.v3 import (
    AsyncStreamingClient,
    StreamingClientOptions,
    StreamingEvents,
    StreamingParameters,
)

from captioner.testing import TranscriptScript
from captioner.testing.sdk import formatted_finals, record_events, sdk_problems, stream_with_official_sdk
from conftest import fixture

CHUNK = 1600  # 50 ms


def pcm(name: str) -> bytes:
    return soundfile.read(fixture(f"{name}.wav"), dtype="int16")[0].tobytes()


def check(events, server, name="hello"):
    assert sdk_problems(events) == []  # no Error; Begin first, Termination last
    turns = [event for kind, event in events if kind == StreamingEvents.Turn]
    partials = [t for t in turns if not t.end_of_turn]
    finals = [t for t in turns if t.end_of_turn and t.turn_is_formatted]
    assert partials, "no partial turns"
    assert formatted_finals(events) == [turn.text for turn in TranscriptScript.load(fixture(f"{name}.json")).turns]
    assert finals[0].words[0].start > 0 and finals[0].words[0].word_is_final
    record = server.connections[0]
    assert record.headers["Authorization"] == "sdk-test-key"
    assert record.params.format_turns is True


def test_sync_client_receives_begin_turns_and_termination(fake_server):
    server = fake_server(fixture("hello.json"))
    events = stream_with_official_sdk(server.url, pcm("hello"), pause_s=0, api_key="sdk-test-key")
    check(events, server)


def test_async_client_receives_begin_turns_and_termination(fake_server):
    server = fake_server(fixture("weather.json"))
    events = []

    async def run():
        client = AsyncStreamingClient(
            StreamingClientOptions(api_key="sdk-test-key", api_host=f"ws://127.0.0.1:{server.port}")
        )
        record_events(client, events)
        await client.connect(StreamingParameters(sample_rate=16000, format_turns=True))
        audio = pcm("weather")
        audio += bytes(-len(audio) % CHUNK)  # the service refuses chunks under 50 ms
        for start in range(0, len(audio), CHUNK):
            await client.stream(audio[start : start + CHUNK])
        await client.disconnect(terminate=True)

    asyncio.run(run())
    check(events, server, "weather")
