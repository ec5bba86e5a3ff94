"""pytest fixtures for captioner plugin authors, loaded through the `pytest11` entry point.

    def test_my_plugin(replay):
        plugin = MyPlugin()
        result = replay("tests/hello.wav", plugins=[plugin])  # script: tests/hello.json
        assert result.final_texts == ["hello this is a test"]

    def test_with_a_fault(fake_server, replay):
        server = fake_server("tests/hello.json", faults=[close_at(1000, 1011)])
        result = replay("tests/hello.wav", server=server)
        assert result.error is not None
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from . import FakeServerThread, FakeStreamingServer, TranscriptScript, replay as _replay


@pytest.fixture
def fake_server() -> Iterator:
    """Start fake AssemblyAI v3 servers on 127.0.0.1: `fake_server(script, **options)`.

    `script` is a path to a transcript script or a TranscriptScript; options are those
    of FakeStreamingServer (faults, reply_delay_ms, api_key, reject_with). Each server
    runs in its own thread until the test ends; `server.url` is its address and
    `server.connections` what every client did.
    """
    threads: list[FakeServerThread] = []

    def start(script: str | os.PathLike | TranscriptScript, **options) -> FakeStreamingServer:
        if not isinstance(script, TranscriptScript):
            script = TranscriptScript.load(script)
        options.setdefault("reference", script.reference_audio())  # the WAV beside it, if any
        thread = FakeServerThread(FakeStreamingServer(script, **options))
        server = thread.__enter__()
        threads.append(thread)
        return server

    yield start
    for thread in threads:
        thread.__exit__(None, None, None)


@pytest.fixture
def replay():
    """Replay a WAV through the engine with chosen plugins, offline and unpaced.

    `replay(wav, script=None, server=None, plugins=(), speed=None, settings=None,
    **server_options)` returns a ReplayResult with `finals`, `partials`, `errors`,
    `summary`, `error` (what ended a failed run) and `server` (its recording).
    """
    return _replay
