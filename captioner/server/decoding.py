"""The decoding pool the embedded server's sessions share.

Worker threads, each with its own decoder (made on first use), so decoding never blocks
the event loop or other sessions, and a model is loaded once per worker, not once per
session.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import metrics
from .recognizer import Recognizer, Transcription


def default_decode_workers() -> int:
    """Decoding threads when --decode-workers is not given: two, or one on one core. A
    recognizer that sizes itself to the pool (faster-whisper's replicas) asks here too."""
    return min(2, os.cpu_count() or 1)


class DecodePool:
    """Worker threads shared by all sessions, each with its own decoder (made on first use)."""

    def __init__(self, recognizer: Recognizer, workers: int | None = None):
        self.recognizer = recognizer
        self.workers = workers or default_decode_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="captioner-decode")
        self._local = threading.local()
        self.busy = 0  # decodes queued or running
        # Whether the decoders go on where the last partial left off (transcribe_partial):
        # known once the first one is made.
        self.streams: bool | None = None

    def _decoder(self):
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = self.recognizer.new_decoder()
            self.streams = hasattr(decoder, "transcribe_partial")
        return decoder

    def _decode(self, audio: np.ndarray, partial: bool) -> tuple[Transcription, float]:
        decoder = self._decoder()
        streams = partial and hasattr(decoder, "transcribe_partial")
        started = time.perf_counter()
        transcription = decoder.transcribe_partial(audio) if streams else decoder.transcribe(audio)
        took = time.perf_counter() - started
        metrics.DECODE_SECONDS.labels("partial" if partial else "final").observe(took)
        return transcription, 0.0 if streams else took

    async def warm(self) -> None:
        """Make every worker's decoder now (loading its model), so that a server that says
        it is ready does not make its first sessions wait."""
        barrier = threading.Barrier(self.workers)  # one job per thread: each waits for the others

        def make() -> None:
            self._decoder()
            barrier.wait(timeout=300)

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, make) for _ in range(self.workers)))

    async def transcribe(self, audio: np.ndarray, partial: bool = False) -> tuple[Transcription, float]:
        """The transcription, and the seconds of decoding it added: a partial's audio is the
        turn so far, which a decoder that starts over decodes again (all of the time spent
        is extra), while a streaming one goes on where it left off, doing work the final
        would have had to do anyway (none is)."""
        self.busy += 1
        metrics.DECODE_BUSY.inc()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._decode, audio, partial)
        finally:
            self.busy -= 1
            metrics.DECODE_BUSY.dec()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
