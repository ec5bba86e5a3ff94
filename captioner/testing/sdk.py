"""The official AssemblyAI SDK as a test client: does a server speak v3 as the SDK expects?

Recognizer plugins and anything serving captioner's protocol can check themselves with
the client people already use:

    events = stream_with_official_sdk(url, pcm)
    assert sdk_problems(events) == []

Needs the `assemblyai` package (a test dependency, imported only when called).
"""

from __future__ import annotations

import time

CHUNK_BYTES = 1600  # 50 ms of 16 kHz 16-bit mono: the service's smallest chunk


def stream_with_official_sdk(
    url: str, pcm: bytes, *, format_turns: bool = True, pause_s: float = 0.01, api_key: str = "unused"
) -> list[tuple]:
    """Stream 16 kHz mono 16-bit `pcm` to the v3 server at `url` with the SDK's sync
    StreamingClient, a chunk every `pause_s`; every (StreamingEvents kind, event) it got."""
    from assemblyai.streaming.v3 import StreamingClient, StreamingClientOptions, StreamingParameters

    events: list[tuple] = []
    client = StreamingClient(StreamingClientOptions(api_key=api_key, api_host=url.removesuffix("/v3/ws")))
    record_events(client, events)
    client.connect(StreamingParameters(sample_rate=16000, format_turns=format_turns))
    pcm += bytes(-len(pcm) % CHUNK_BYTES)
    for start in range(0, len(pcm), CHUNK_BYTES):
        client.stream(pcm[start : start + CHUNK_BYTES])
        time.sleep(pause_s)
    client.disconnect(terminate=True)
    return events


def record_events(client, events: list[tuple]) -> None:
    """Append every (kind, event) an SDK client (sync or async) gets to `events`."""
    from assemblyai.streaming.v3 import StreamingEvents

    for kind in (StreamingEvents.Begin, StreamingEvents.Turn, StreamingEvents.Termination, StreamingEvents.Error):
        client.on(kind, lambda _client, event, kind=kind: events.append((kind, event)))


def sdk_problems(events: list[tuple]) -> list[str]:
    """What the SDK saw go wrong: an error, or a session that did not begin and end."""
    from assemblyai.streaming.v3 import StreamingEvents

    kinds = [kind for kind, _ in events]
    found = [f"the SDK reported an error: {event}" for kind, event in events if kind == StreamingEvents.Error]
    if not kinds or kinds[0] != StreamingEvents.Begin:
        found.append(f"the session did not start with Begin: {kinds[:3]}")
    if not kinds or kinds[-1] != StreamingEvents.Termination:
        found.append(f"the session did not end with Termination: {kinds[-3:]}")
    return found


def formatted_finals(events: list[tuple]) -> list[str]:
    """The transcripts of the formatted final Turns, in order."""
    from assemblyai.streaming.v3 import StreamingEvents

    return [
        event.transcript
        for kind, event in events
        if kind == StreamingEvents.Turn and event.end_of_turn and event.turn_is_formatted
    ]
