"""`captioner serve --workers N`: N worker processes behind one listening socket.

The supervisor (this module) opens the socket and starts each worker with the `spawn`
method: every worker loads its own models, so a decoder that holds the GIL
(PocketSphinx) holds one process, not the instance. The supervisor accepts each
connection and hands it to the least-loaded worker (captioner.server.handover). It
prints the URL once every worker is ready, restarts a worker that dies, and passes
SIGTERM (drain) and SIGINT on; it exits when they have all exited, 0 if they all exited
cleanly. Workers share their metrics through prometheus-client's multiprocess directory.
"""

from __future__ import annotations

import errno
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

from ..errors import CaptionerError
from .handover import Dispatcher

MAX_RESTARTS = 10  # a worker that keeps dying is a bug to report, not to hide


class WorkerFailed(CaptionerError):
    """A worker could not start: its own error, said once for the instance."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


class Supervisor:
    def __init__(self, target: Callable, argv: list[str], workers: int, sock: socket.socket):
        self.target, self.argv, self.count, self.sock = target, argv, workers, sock
        self.sock.setblocking(False)
        self.context = multiprocessing.get_context("spawn")
        self.ready = self.context.Queue()
        self.processes: dict[int, multiprocessing.Process] = {}  # worker index -> process
        self.dispatch = Dispatcher(self.context, workers)
        self.listening = True
        self.accept_after = 0.0  # monotonic time: accepting pauses when out of descriptors
        self.stopping: int | None = None  # the signal that stops the instance, once one came
        self.restarts = 0

    def _start(self, index: int) -> None:
        theirs = self.dispatch.open(index)
        try:
            process = self.context.Process(target=self.target, name=f"captioner-worker-{index}",
                                           args=(self.argv, theirs, index, self.ready, self.dispatch.done))
            process.start()
        finally:
            theirs.close()  # pickled for the child already: it has its own copy
        self.processes[index] = process

    def _accept(self, serving: set[int]) -> None:
        """Every connection waiting, each to the serving worker with the fewest open."""
        while True:
            try:
                connection, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # that client went before it was accepted
                print(f"captioner: cannot accept a connection: {error}", file=sys.stderr, flush=True)
                self.accept_after = time.monotonic() + 1  # the connections wait a moment
                return
            with connection:
                self.dispatch.hand_over(connection, serving)

    def _stop_listening(self) -> None:
        """No worker will take a connection again: refused at once, a load balancer
        tries another instance instead of waiting for this one to exit."""
        if self.listening:
            self.sock.close()
            self.listening = False

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
            self.dispatch.close()
            self._stop_listening()

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
            serving = ready - set(codes) - self.dispatch.released
            if self.stopping is not None and not serving:
                self._stop_listening()
            channels = self.dispatch.channels_of(serving)
            # Connections wait in the socket's queue while no worker can take them.
            accepting = self.listening and bool(serving) and time.monotonic() >= self.accept_after
            for event in wait([*live, *channels, *([self.sock] if accepting else [])], timeout=1):
                if event is self.sock:
                    self._accept(serving - self.dispatch.released)
                elif event in channels:
                    self.dispatch.answer(channels[event])
                else:
                    self._exited(live[event], ready, codes)
                    break  # a worker restarted: its pair and its load are new, look again
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
