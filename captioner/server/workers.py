"""`captioner serve --workers N`: N worker processes on one listening socket.

The supervisor (this module) opens the socket and starts each worker with the `spawn`
method, handing it the socket: every worker loads its own models and accepts from the
same queue (the kernel picks which worker takes a connection, not by load), and a
decoder that holds the GIL (PocketSphinx) holds one process, not the instance. The
supervisor prints the URL once every worker is ready, restarts a worker that dies, and
passes SIGTERM (drain) and SIGINT on; it exits when they have all exited, 0 if they all
exited cleanly. Workers share their metrics through prometheus-client's multiprocess
directory.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
from multiprocessing.connection import wait
from typing import Callable

from prometheus_client.multiprocess import mark_process_dead

from ..errors import CaptionerError

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
        self.context = multiprocessing.get_context("spawn")
        self.ready = self.context.Queue()
        self.processes: dict[int, multiprocessing.Process] = {}  # worker index -> process
        self.stopping: int | None = None  # the signal that stops the instance, once one came
        self.restarts = 0

    def _start(self, index: int) -> None:
        process = self.context.Process(target=self.target, args=(self.argv, self.sock, index, self.ready),
                                       name=f"captioner-worker-{index}")
        process.start()
        self.processes[index] = process

    def _signal(self, signum, frame) -> None:
        self.stopping = signum
        for process in self.processes.values():
            if process.is_alive():
                os.kill(process.pid, signum)  # a second SIGTERM reaches them too: they exit at once
        if signum == signal.SIGTERM:
            self.sock.close()  # the workers hold their own copies; nothing new queues here

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
            for sentinel in wait(list(live), timeout=1):
                index = live[sentinel]
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
        return 0 if all(code == 0 for code in codes.values()) else 1

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
