"""pytest fixtures for captioner plugin authors, loaded through the `pytest11` entry point.

    def test_my_plugin(replay):
        plugin = MyPlugin()
        result = replay("tests/hello.wav", plugins=[plugin])  # script: tests/hello.json
        assert result.final_texts == ["hello this is a test"]

    def test_with_a_fault(fake_server, replay):
        server = fake_server("tests/hello.json", faults=[close_at(1000, 1011)])
        result = replay("tests/hello.wav", server=server)
        assert result.error is not None

In `async def` tests (with pytest-asyncio installed), the same on the test's own event
loop: `fake_server_async` starts servers there, `replay_async` is awaited.

    @pytest.mark.asyncio
    async def test_my_plugin_async(fake_server_async, replay_async):
        server = await fake_server_async("tests/hello.json")
        result = await replay_async("tests/hello.wav", server.base_url, plugins=[MyPlugin()])
        assert result.final_texts == ["hello this is a test"]
        assert server.connections[0].close_code == 1000

Without pytest-asyncio the plugin still loads, with every fixture but `fake_server_async`
working (that one fails, saying what to install).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from . import FakeServerThread, FakeStreamingServer, TranscriptScript, replay as _replay, replay_async as _replay_async

try:
    import pytest_asyncio
except ImportError:  # the synchronous fixtures do not need it
    pytest_asyncio = None


def _new_fake_server(script: str | os.PathLike | TranscriptScript, options: dict) -> FakeStreamingServer:
    """A FakeStreamingServer, not started, playing `script` (a path or a TranscriptScript)."""
    if not isinstance(script, TranscriptScript):
        script = TranscriptScript.load(script)
    options.setdefault("reference", script.reference_audio())  # the WAV beside it, if any
    return FakeStreamingServer(script, **options)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeStreamingServer]]:
    """Start fake AssemblyAI v3 servers on 127.0.0.1: `fake_server(script, **options)`.

    `script` is a path to a transcript script or a TranscriptScript; options are those
    of FakeStreamingServer (faults, reply_delay_ms, api_key, reject_with). Each server
    runs in its own thread until the test ends; `server.url` is its address and
    `server.connections` what every client did.
    """
    threads: list[FakeServerThread] = []

    def start(script: str | os.PathLike | TranscriptScript, **options) -> FakeStreamingServer:
        thread = FakeServerThread(_new_fake_server(script, options))
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


@pytest.fixture
def replay_async():
    """`captioner.testing.replay_async`, for `async def` tests: awaited on the test's loop.

        result = await replay_async(wav, server.base_url, plugins=[plugin])

    `replay_async(wav, url, *, plugins=(), speed=None, settings=None, options=None)`
    replays `wav` through the engine to the server at `url` (a running server's
    `base_url`: a `fake_server_async` one, or any other) with only `plugins` and an
    EventRecorder, and returns a ReplayResult (`finals`, `final_texts`, `partials`,
    `errors`, `summary`, `error`). Its `server` is None: what the server saw is on the
    server itself (`server.connections`). `speed=None` sends the audio unpaced.
    """
    return _replay_async


_LOOP_MISMATCH = (
    "fake_server_async was set up on another event loop than the one this test runs on, "
    "so its servers would never be served while the test awaits them: give the fixture "
    "and the test the same loop scope (asyncio_default_fixture_loop_scope and the test's "
    "@pytest.mark.asyncio(loop_scope=...)), or start the server in the test itself: "
    "`async with FakeStreamingServer(script) as server:`"
)

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def fake_server_async() -> AsyncIterator[Callable[..., Awaitable[FakeStreamingServer]]]:
        """Start fake AssemblyAI v3 servers on the test's own event loop, for `async def`
        tests under pytest-asyncio: `server = await fake_server_async(script, **options)`.

            @pytest.mark.asyncio
            async def test_a_fault(fake_server_async, replay_async):
                server = await fake_server_async("tests/hello.json", faults=[close_at(1000, 4002)])
                result = await replay_async("tests/hello.wav", server.base_url)
                assert result.error.code == 4002

        `script` and options are those of `fake_server`. No thread: the servers run on the
        loop the test awaits on, and stop when the test ends. The fixture runs on the
        default fixture loop (asyncio_default_fixture_loop_scope, "function" when unset),
        which must be the test's loop: a test on another one gets a clear error.
        """
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as servers:

            async def start(script: str | os.PathLike | TranscriptScript, **options) -> FakeStreamingServer:
                if asyncio.get_running_loop() is not loop:
                    raise RuntimeError(_LOOP_MISMATCH)
                return await servers.enter_async_context(_new_fake_server(script, options))

            yield start

else:

    @pytest.fixture
    def fake_server_async():
        """Needs pytest-asyncio, which is not installed: fails saying so."""
        pytest.fail(
            "the fake_server_async fixture needs pytest-asyncio (pip install pytest-asyncio); "
            "without it, use the fake_server fixture from a synchronous test",
            pytrace=False,
        )
