"""The official AssemblyAI SDK (v3, sync and async clients) against the fake server.

If our fake drifted from the real protocol (a missing field, a wrong type), the SDK's
pydantic models would reject its messages and these tests would see errors.
"""

from __future__ import annotations

import asyncio

import soundfile
from assemblyai.streaming.v3 import (
    AsyncStreamingClient,
    StreamingClient,
    StreamingClientOptions,
    StreamingEvents,
    StreamingParameters,
)

from captioner.testing import TranscriptScript
from conftest import fixture

CHUNK = 1600  # 50 ms


def fixture_chunks(name="hello"):
    pcm = soundfile.read(fixture(f"{name}.wav"), dtype="int16")[0].tobytes()
    pcm += bytes(-len(pcm) % CHUNK)  # the service refuses chunks under 50 ms
    return [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]


def listen(client, events):
    for kind in (StreamingEvents.Begin, StreamingEvents.Turn, StreamingEvents.Termination, StreamingEvents.Error):
        client.on(kind, lambda _client, event, kind=kind: events.append((kind, event)))


def check(events, server, name="hello"):
    kinds = [kind for kind, _ in events]
    assert StreamingEvents.Error not in kinds, [e for k, e in events if k == StreamingEvents.Error]
    assert kinds[0] == StreamingEvents.Begin and kinds[-1] == StreamingEvents.Termination
    turns = [event for kind, event in events if kind == StreamingEvents.Turn]
    partials = [t for t in turns if not t.end_of_turn]
    finals = [t for t in turns if t.end_of_turn and t.turn_is_formatted]
    assert partials, "no partial turns"
    assert [t.transcript for t in finals] == [turn.text for turn in TranscriptScript.load(fixture(f"{name}.json")).turns]
    assert finals[0].words[0].start > 0 and finals[0].words[0].word_is_final
    record = server.connections[0]
    assert record.headers["Authorization"] == "sdk-test-key"
    assert record.params.format_turns is True


def test_sync_client_receives_begin_turns_and_termination(fake_server):
    server = fake_server(fixture("hello.json"))
    events = []
    client = StreamingClient(StreamingClientOptions(api_key="sdk-test-key", api_host=f"ws://127.0.0.1:{server.port}"))
    listen(client, events)
    client.connect(StreamingParameters(sample_rate=16000, format_turns=True))
    client.stream(fixture_chunks())
    client.disconnect(terminate=True)
    check(events, server)


def test_async_client_receives_begin_turns_and_termination(fake_server):
    server = fake_server(fixture("weather.json"))
    events = []

    async def run():
        client = AsyncStreamingClient(
            StreamingClientOptions(api_key="sdk-test-key", api_host=f"ws://127.0.0.1:{server.port}")
        )
        listen(client, events)
        await client.connect(StreamingParameters(sample_rate=16000, format_turns=True))
        for chunk in fixture_chunks("weather"):
            await client.stream(chunk)
        await client.disconnect(terminate=True)

    asyncio.run(run())
    check(events, server, "weather")
