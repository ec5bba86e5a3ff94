"""One client streaming a WAV to a server, alone in its own process.

    python bench/probe_client.py captioner|sdk-sync|sdk-async URL WAV [--realtime] [--slow-plugin]

Prints one JSON line: each Turn message the client's handler received, with when
(`time.monotonic()`, system-wide on Linux, so the server's send times compare) and which
(turn order, end of turn, word count: what identifies a Turn message of the fake server);
the CPU seconds and wall seconds of the streaming itself (after the imports); and the
process's peak RSS.

By default audio goes as fast as the server takes it. The SDK clients are the official
`assemblyai` v3 `StreamingClient` and `AsyncStreamingClient`, fed the same 50 ms chunks
captioner sends. `--realtime` paces captioner at real time (the real-time path figures);
`--slow-plugin` adds a plugin that blocks for 0.5 s on every partial and final.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Iterator

CHUNK = 1600  # 50 ms of 16 kHz 16-bit mono


def pcm_chunks(wav: str) -> Iterator[bytes]:
    """The WAV in 50 ms chunks, read a second at a time as they are asked for (as
    captioner reads it), the last one padded with silence."""
    import soundfile

    for block in soundfile.blocks(wav, blocksize=16000, dtype="int16"):
        pcm = block.tobytes()
        pcm += bytes(-len(pcm) % CHUNK)
        yield from (pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK))


class Captioner:
    def __init__(self, realtime: bool, slow_plugin: bool):
        from captioner import Settings, hookimpl
        from captioner.audio.replay import WavReplaySource
        from captioner.plugins.manager import build_plugin_manager
        from captioner.runner import meeting_engine, prepare_meeting

        self.receipts: list[tuple] = []
        receipts = self.receipts

        class Receipts:
            # Async hooks run on the event loop: no thread hop in the delay figure.
            @hookimpl
            async def on_partial(self, turn):
                receipts.append((time.monotonic(), turn.turn_order, False, len(turn.words)))

            @hookimpl
            async def on_final(self, turn):
                receipts.append((time.monotonic(), turn.turn_order, True, len(turn.words)))

        class Sleeper:
            """Blocks its worker thread: captioner must keep sending audio on schedule."""

            @hookimpl
            def on_partial(self, turn):
                time.sleep(0.5)

            @hookimpl
            def on_final(self, turn):
                time.sleep(0.5)

        self.pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
        self.pm.register(Receipts(), name="receipts")
        if slow_plugin:
            self.pm.register(Sleeper(), name="sleeper")
        self.speed = 1.0 if realtime else None
        self.Settings, self.Source = Settings, WavReplaySource
        self.prepare_meeting, self.meeting_engine = prepare_meeting, meeting_engine

    def run(self, url: str, wav: str) -> None:
        # Assembled as the command line assembles a meeting (captioner.runner).
        prepared = self.prepare_meeting("replay", {}, self.pm, self.Settings(url=url))
        source = self.Source(wav, speed=self.speed)

        async def caption() -> None:
            async with self.meeting_engine(prepared) as engine:
                await engine.caption(source)

        asyncio.run(caption())


def sdk_receipt(receipts: list):
    return lambda _client, event: receipts.append(
        (time.monotonic(), event.turn_order, bool(event.end_of_turn), len(event.words))
    )


class SdkSync:
    def __init__(self, realtime: bool, slow_plugin: bool):
        from assemblyai.streaming import v3

        self.v3 = v3
        self.receipts: list[tuple] = []

    def run(self, url: str, wav: str) -> None:
        v3 = self.v3
        chunks = pcm_chunks(wav)
        options = v3.StreamingClientOptions(api_key="bench", api_host=url.removesuffix("/v3/ws"), terminate_timeout=600)
        client = v3.StreamingClient(options)
        client.on(v3.StreamingEvents.Turn, sdk_receipt(self.receipts))
        client.connect(v3.StreamingParameters(sample_rate=16000))
        client.stream(chunks)
        client.disconnect(terminate=True)


class SdkAsync(SdkSync):
    def run(self, url: str, wav: str) -> None:
        v3 = self.v3
        chunks = pcm_chunks(wav)

        async def main():
            options = v3.StreamingClientOptions(api_key="bench", api_host=url.removesuffix("/v3/ws"), terminate_timeout=600)
            client = v3.AsyncStreamingClient(options)
            client.on(v3.StreamingEvents.Turn, sdk_receipt(self.receipts))
            await client.connect(v3.StreamingParameters(sample_rate=16000))
            for chunk in chunks:
                await client.stream(chunk)
            await client.disconnect(terminate=True)

        asyncio.run(main())


def peak_rss_mb() -> float:
    # Not getrusage(): on Linux its ru_maxrss survives execve, so a probe started by a
    # big benchmark process would report the benchmark's peak. VmHWM is this program's.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


CLIENTS = {"captioner": Captioner, "sdk-sync": SdkSync, "sdk-async": SdkAsync}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("url")
    parser.add_argument("wav")
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument("--slow-plugin", action="store_true")
    args = parser.parse_args()
    client = CLIENTS[args.client](args.realtime, args.slow_plugin)  # imports happen here, off the clock
    cpu, wall = time.process_time(), time.monotonic()
    client.run(args.url, args.wav)
    figures = {
        "client": args.client,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.monotonic() - wall,
        "maxrss_mb": peak_rss_mb(),
        "receipts": client.receipts,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
