"""`captioner serve --workers N`: N worker processes behind one listening socket.

The supervisor (this module) opens the socket and starts each worker with the `spawn`
method: every worker loads its own models, so a decoder that holds the GIL
(PocketSphinx) holds one process, not the instance. The supervisor accepts each
connection itself and hands it (SCM_RIGHTS, over a Unix socket pair) to the worker with
the fewest open connections: left to the kernel, the first worker to wake takes every
connection waiting, and sessions that start together pile up on one worker. Each worker
counts the connections it has closed in shared memory, so the supervisor knows every
worker's load without asking. The supervisor prints the URL once every worker is ready,
restarts a worker that dies, and passes SIGTERM (drain) and SIGINT on; it exits when
they have all exited, 0 if they all exited cleanly. Workers share their metrics through
prometheus-client's multiprocess directory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait
from typing import Callable

from prometheus_client.multiprocess import mark_process_dead
from websockets.asyncio.server import ServerConnection

from ..errors import CaptionerError

MAX_RESTARTS = 10  # a worker that keeps dying is a bug to report, not to hide
HAND_OVER_TIMEOUT_S = 5  # a worker whose socket pair stays full this long is stuck
# On a worker's socket pair: a connection (with its descriptor), the worker's "hand over
# no more" as it stops, and the supervisor's answer once it will not.
CONNECTION, RELEASE, RELEASED = b"c", b"r", b"d"


class WorkerFailed(CaptionerError):
    """A worker could not start: its own error, said once for the instance."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


class Handover:
    """A worker's side of the supervisor's hand-over: the connections come through
    `sock`, each one closed is counted in the shared `closed[index]`, and `release()`
    asks the supervisor for no more before the worker stops."""

    def __init__(self, channel: socket.socket, closed, index: int):
        self.sock = HandedConnections(channel)
        closed_count = closed

        class CountedConnection(ServerConnection):
            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                closed_count[index] += 1  # this worker is the only writer of its slot

        self.connection_class = CountedConnection

    async def release(self) -> None:
        """Until the supervisor has said it hands over nothing more: a connection it
        sent a moment before is then already here, to be answered, not lost."""
        if self.sock.released.is_set():
            return
        try:
            self.sock.send(RELEASE)
        except OSError:  # the supervisor is gone
            return
        try:
            await asyncio.wait_for(self.sock.released.wait(), HAND_OVER_TIMEOUT_S)
        except TimeoutError:
            pass


class HandedConnections(socket.socket):
    """The worker's end of its Unix socket pair, served as if it were the listening
    socket: each accept() takes the next connection the supervisor handed over."""

    def __init__(self, channel: socket.socket):
        super().__init__(fileno=channel.detach())
        self.released = asyncio.Event()  # set once the supervisor hands over no more (or is gone)

    def listen(self, backlog: int = 0) -> None:
        pass  # the supervisor listens; the event loop asks this socket to listen too

    def accept(self) -> tuple[socket.socket, object]:
        message, fds, _, _ = socket.recv_fds(self, 1, 1)  # one byte with each connection
        if not fds:
            if message == RELEASED or not message:
                self.released.set()
            if not message:  # the supervisor is gone: take nothing more, drain, exit
                asyncio.get_running_loop().remove_reader(self.fileno())
                os.kill(os.getpid(), signal.SIGTERM)
            raise BlockingIOError
        connection = socket.socket(fileno=fds[0])
        try:
            return connection, connection.getpeername()
        except OSError:  # the client has gone already
            connection.close()
            raise ConnectionAbortedError from None


class Supervisor:
    def __init__(self, target: Callable, argv: list[str], workers: int, sock: socket.socket):
        self.target, self.argv, self.count, self.sock = target, argv, workers, sock
        self.sock.setblocking(False)
        self.context = multiprocessing.get_context("spawn")
        self.ready = self.context.Queue()
        self.processes: dict[int, multiprocessing.Process] = {}  # worker index -> process
        self.channels: dict[int, socket.socket] = {}  # worker index -> our end of its socket pair
        self.handed = [0] * workers  # connections handed to each worker ...
        self.closed = self.context.RawArray("q", workers)  # ... and closed by it: its load
        self.released: set[int] = set()  # workers stopping, which take no more connections
        self.accept_after = 0.0  # monotonic time: accepting pauses when out of descriptors
        self.stopping: int | None = None  # the signal that stops the instance, once one came
        self.restarts = 0

    def _start(self, index: int) -> None:
        if index in self.channels:
            self.channels.pop(index).close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.settimeout(HAND_OVER_TIMEOUT_S)
        self.handed[index] = self.closed[index] = 0
        self.released.discard(index)
        process = self.context.Process(target=self.target, args=(self.argv, theirs, index, self.ready, self.closed),
                                       name=f"captioner-worker-{index}")
        process.start()
        theirs.close()  # pickled for the child already: it has its own copy
        self.processes[index], self.channels[index] = process, ours

    def _hand_over(self, serving: set[int]) -> None:
        """Every connection waiting goes to the serving worker with the fewest open."""
        while serving:
            try:
                connection, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors: the connections wait a moment
                print(f"captioner: cannot accept a connection: {error}", file=sys.stderr, flush=True)
                self.accept_after = time.monotonic() + 1
                return
            with connection:
                index = min(serving, key=lambda i: (self.handed[i] - self.closed[i], i))
                try:
                    socket.send_fds(self.channels[index], [CONNECTION], [connection.fileno()])
                    self.handed[index] += 1
                except OSError:  # that worker is dying; this client sees the close and retries
                    pass

    def _release(self, index: int) -> None:
        """A worker says it is stopping: hand it nothing more, and tell it so."""
        try:
            if self.channels[index].recv(16):
                self.released.add(index)
                self.channels[index].send(RELEASED)
        except OSError:
            pass  # it is gone: its exit comes through its sentinel

    def _signal(self, signum, frame) -> None:
        self.stopping = signum
        for process in self.processes.values():
            if process.is_alive():
                os.kill(process.pid, signum)  # a second SIGTERM reaches them too: they exit at once

    def run(self, url: str, announcement: str) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="captioner-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any worker starts
        # SIGINT is left ignored when it was (a background job of a script), as Python does.
        signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
        previous = {signum: signal.signal(signum, self._signal) for signum in signals}
        try:
            for index in range(self.count):
                self._start(index)
            self._wait_ready()
            print(url, flush=True)
            print(announcement, file=sys.stderr, flush=True)
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for process in self.processes.values():
                if process.is_alive():  # the others, when one could not start
                    process.terminate()
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            for channel in self.channels.values():
                channel.close()
            self.sock.close()

    def _wait_ready(self) -> None:
        """Until every worker has loaded its models; a worker's error ends the start."""
        started = 0
        while started < self.count:
            dead = [(index, p.exitcode) for index, p in self.processes.items() if p.exitcode is not None]
            if self.stopping is not None:
                raise WorkerFailed("stopped while the workers were starting", 1)
            try:
                index, failure = self.ready.get(timeout=1)
            except queue.Empty:
                if dead:
                    raise WorkerFailed(f"worker {dead[0][0]} exited ({dead[0][1]}) while starting") from None
                continue
            if failure is not None:
                raise WorkerFailed(failure[1], failure[0])
            started += 1

    def _supervise(self) -> int:
        codes: dict[int, int] = {}
        ready = set(self.processes)
        while len(codes) < len(self.processes):
            ready |= self._ready_now()
            live = {p.sentinel: index for index, p in self.processes.items() if index not in codes}
            serving = ready - set(codes) - self.released
            channels = {self.channels[index]: index for index in serving}
            # Connections wait in the socket's queue while no worker can take them.
            accepting = [self.sock] if serving and time.monotonic() >= self.accept_after else []
            for event in wait([*live, *channels, *accepting], timeout=1):
                if event is self.sock:
                    self._hand_over(serving - self.released)
                elif event in channels:
                    self._release(channels[event])
                else:
                    self._exited(live[event], ready, codes)
        return 0 if all(code == 0 for code in codes.values()) else 1

    def _exited(self, index: int, ready: set[int], codes: dict[int, int]) -> None:
        self.processes[index].join(timeout=10)  # its pipe closes a moment before it is reaped
        # Its live gauges (sessions open, decodes busy) must not count for ever.
        mark_process_dead(self.processes[index].pid)
        code = self.processes[index].exitcode
        if self.stopping is None and self.restarts < MAX_RESTARTS:
            print(f"captioner: worker {index} exited ({code}); starting another", file=sys.stderr, flush=True)
            self.restarts += 1
            ready.discard(index)
            self._start(index)
        else:
            # One stopped while it was still starting had nothing to serve: not a failure.
            codes[index] = code if index in ready else 0

    def _ready_now(self) -> set[int]:
        indexes = set()
        while True:
            try:
                index, failure = self.ready.get_nowait()
            except queue.Empty:
                return indexes
            if failure is None:
                indexes.add(index)
            else:
                print(f"captioner: worker {index} could not start: {failure[1]}", file=sys.stderr, flush=True)
