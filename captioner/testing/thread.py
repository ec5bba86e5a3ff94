"""A server on its own event loop in a daemon thread, for synchronous tests and benches."""

from __future__ import annotations

import asyncio
import threading


class ServerThread:
    """Runs a server (anything with async `start()` and `stop()`) in a background thread:

    with ServerThread(FakeStreamingServer(script)) as server:
        subprocess.run(["captioner", "replay", wav, "--url", server.url])
    """

    def __init__(self, server):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="captioner-server", daemon=True)

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
