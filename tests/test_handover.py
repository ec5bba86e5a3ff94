"""The supervisor-to-worker hand-over of `serve --workers`, both ends in this process over
a real Unix socket pair, with real TCP clients and a real StreamingServer serving the
connections it is handed (the whole instance is tested in test_serve_scale.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket

import pytest
from websockets.asyncio.client import connect

from captioner.server.handover import Dispatcher, Handover
from captioner.server.streaming import StreamingServer

pytestmark = pytest.mark.asyncio
WORKERS = 2


class Pair:
    """A dispatcher (the supervisor's end) and the workers' servers, all in this loop."""

    def __init__(self):
        self.dispatch = Dispatcher(multiprocessing.get_context("spawn"), WORKERS)
        self.handovers = [Handover(self.dispatch.open(i), self.dispatch.done, i) for i in range(WORKERS)]
        self.servers = [StreamingServer(lambda params, emit: None, handover=h) for h in self.handovers]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        loop = asyncio.get_running_loop()
        for index, channel in self.dispatch.channels.items():
            loop.add_reader(channel, self.dispatch.answer, index)
        loop.add_reader(self.listener, self._accept)

    def _accept(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            self.dispatch.hand_over(connection, set(range(WORKERS)) - self.dispatch.released)

    async def start(self) -> Pair:
        for server in self.servers:
            await server.start()
        return self

    async def close(self) -> None:
        for server in self.servers:
            await server.stop()  # each asks the dispatcher to release it, and is answered
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.listener)
        for channel in self.dispatch.channels.values():
            loop.remove_reader(channel)
        self.dispatch.close()
        self.listener.close()

    async def health(self) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return answer.decode()


async def until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_connections_go_to_the_least_loaded_worker_and_are_counted_when_done():
    pair = await Pair().start()
    try:
        held = [await connect(f"ws://127.0.0.1:{pair.port}/v3/ws?sample_rate=16000") for _ in range(3)]
        assert [pair.dispatch.load(i) for i in range(WORKERS)] == [2, 1]
        await held[0].close()  # on worker 0: the workers are now even
        await until(lambda: pair.dispatch.load(0) == 1)
        assert "200 OK" in await pair.health()  # a plain HTTP request, served and counted done too
        await until(lambda: pair.dispatch.load(0) == 1)
        for ws in held[1:]:
            await ws.close()
        await until(lambda: [pair.dispatch.load(i) for i in range(WORKERS)] == [0, 0])
    finally:
        await pair.close()


async def test_a_connection_handed_over_as_its_worker_stops_is_answered_not_dropped():
    pair = await Pair().start()
    loop = asyncio.get_running_loop()
    try:
        channel = pair.dispatch.channels[0]
        loop.remove_reader(channel)  # the supervisor is slow to read worker 0's "release me"
        stopping = asyncio.create_task(pair.servers[0].stop())
        await asyncio.sleep(0.1)
        # Meanwhile a client connects and is handed to worker 0, which is stopping.
        client = socket.create_connection(("127.0.0.1", pair.port))
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await until(lambda: pair.dispatch.handed[0] == 1)
        loop.add_reader(channel, pair.dispatch.answer, 0)
        answer = await asyncio.to_thread(client.recv, 1024)
        client.close()
        await stopping
        assert answer.startswith(b"HTTP/1.1 ")  # answered (200, or 503 as the server closed), not dropped
        assert pair.dispatch.released == {0}
        for _ in range(3):  # everything after goes to the other worker
            assert "200 OK" in await pair.health()
        assert pair.dispatch.handed == [1, 3]
    finally:
        await pair.close()


async def test_a_worker_whose_supervisor_is_gone_is_told_so_and_waits_for_nothing():
    pair = await Pair().start()
    try:
        asyncio.get_running_loop().remove_reader(pair.dispatch.channels[0])
        pair.dispatch.channels[0].close()
        handover = pair.handovers[0]
        await asyncio.wait_for(handover.supervisor_gone.wait(), 10)
        await asyncio.wait_for(handover.release(), 1)  # already released: returns at once
        assert "200 OK" in await pair.health()  # the other worker goes on
    finally:
        del pair.dispatch.channels[0]
        await pair.close()
