"""How `serve --workers` moves connections from its supervisor to its workers.

The supervisor accepts each connection and passes its descriptor (SCM_RIGHTS, over a
Unix socket pair) to the worker with the fewest open connections: left to the kernel,
the first worker to wake takes every connection waiting (asyncio accepts all of them at
once), and sessions that start together pile up on one worker. Each worker counts the
connections it is done with in shared memory, so the supervisor knows every worker's
load without asking. A stopping worker asks for no more and goes on reading until the
supervisor says it will send none, so a connection sent at the last moment is answered,
not reset.

A socket pair carries single bytes: a connection (with its descriptor), a worker's
"release me" and the supervisor's "released".
"""

from __future__ import annotations

import asyncio
import functools
import socket
import sys
from typing import Callable

from websockets.asyncio.server import ServerConnection

CONNECTION, RELEASE, RELEASED = b"c", b"r", b"d"
RELEASE_TIMEOUT_S = 5  # a supervisor that has not answered by then is stuck or gone


class Dispatcher:
    """The supervisor's side: one socket pair per worker, and each worker's load."""

    def __init__(self, context, workers: int):
        self.channels: dict[int, socket.socket] = {}  # worker index -> our end of its pair
        self.handed = [0] * workers  # connections handed to each worker ...
        self.done = context.RawArray("q", workers)  # ... and those it is done with (it writes its slot)
        self.released: set[int] = set()  # workers that take no more connections

    def open(self, index: int) -> socket.socket:
        """A new socket pair for a worker starting at `index`: the end for the worker."""
        if index in self.channels:
            self.channels.pop(index).close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)  # a stuck worker must not stop the supervisor
        self.channels[index] = ours
        self.handed[index] = self.done[index] = 0
        self.released.discard(index)
        return theirs

    def load(self, index: int) -> int:
        return self.handed[index] - self.done[index]

    def channels_of(self, indexes: set[int]) -> dict[socket.socket, int]:
        return {self.channels[index]: index for index in indexes}

    def hand_over(self, connection: socket.socket, serving: set[int]) -> None:
        """To the least-loaded worker that takes it; closed (the client then knows at
        once) when none does."""
        for index in sorted(serving, key=lambda i: (self.load(i), i)):
            try:
                socket.send_fds(self.channels[index], [CONNECTION], [connection.fileno()])
            except OSError:  # its pair is full (stuck) or closed (dying): the next worker
                continue
            self.handed[index] += 1
            return

    def answer(self, index: int) -> None:
        """A worker's pair is readable: it asks to be released, or it is gone. Either
        way it gets no more connections."""
        try:
            asked = self.channels[index].recv(16)
        except OSError:
            asked = b""
        self.released.add(index)
        if asked:
            try:
                self.channels[index].send(RELEASED)
            except OSError:
                pass  # it is gone: its exit comes through its sentinel

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


class Handover:
    """A worker's side: the connections its supervisor hands over, counted when done."""

    def __init__(self, channel: socket.socket, done, index: int):
        self.done, self.index = done, index
        self.sock = HandedConnections(channel, self.done_with)

    @property
    def supervisor_gone(self) -> asyncio.Event:
        return self.sock.gone

    def done_with(self) -> None:
        self.done[self.index] += 1

    def serve_options(self) -> dict:
        """What websockets' serve() takes instead of a host and port."""
        return {"sock": self.sock, "create_connection": functools.partial(CountedConnection, on_lost=self.done_with)}

    async def release(self) -> None:
        """Until the supervisor has said it hands over nothing more: a connection it
        sent a moment before is then already here, to be answered."""
        if self.sock.released.is_set():
            return
        try:
            self.sock.send(RELEASE)
            await asyncio.wait_for(self.sock.released.wait(), RELEASE_TIMEOUT_S)
        except (OSError, TimeoutError):
            pass  # the supervisor is gone or stuck: nothing more will come


class CountedConnection(ServerConnection):
    """websockets' connection, which tells the worker when it is over."""

    def __init__(self, *args, on_lost: Callable[[], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._on_lost = on_lost

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._on_lost()


class HandedConnections(socket.socket):
    """The worker's end of its socket pair, served as if it were the listening socket:
    each accept() takes the next connection handed over.

    This relies on the selector event loop (CPython's default on Unix; not uvloop)
    calling `listen()` and `accept()` on the socket object it is given, and taking
    BlockingIOError and ConnectionAbortedError from accept() as "nothing to accept".
    """

    def __init__(self, channel: socket.socket, dropped: Callable[[], None]):
        super().__init__(fileno=channel.detach())
        self.dropped = dropped  # a connection handed over that will never be served
        self.released = asyncio.Event()  # the supervisor hands over no more (or is gone)
        self.gone = asyncio.Event()  # the supervisor is gone

    def listen(self, backlog: int = 0) -> None:
        pass  # the supervisor listens

    def accept(self) -> tuple[socket.socket, object]:
        try:
            message, fds, _, _ = socket.recv_fds(self, 1, 1)  # one byte with each connection
        except ConnectionResetError:
            message, fds = b"", []
        if not fds:
            self._control(message)
            raise BlockingIOError
        connection = socket.socket(fileno=fds[0])
        try:
            return connection, connection.getpeername()
        except OSError:  # the client has gone already
            connection.close()
            self.dropped()
            raise ConnectionAbortedError from None

    def _control(self, message: bytes) -> None:
        if message == CONNECTION:  # its descriptor did not fit: this process has too many open
            print("captioner: a connection was lost: this worker is out of file descriptors",
                  file=sys.stderr, flush=True)
            self.dropped()
        elif message == RELEASED:
            self.released.set()
        elif not message:  # the supervisor is gone: take nothing more
            asyncio.get_running_loop().remove_reader(self.fileno())
            self.released.set()
            self.gone.set()
