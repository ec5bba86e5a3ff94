"""Audio between the source and the sessions, kept until the service has made it final.

The pump reads the source in its own task, so a live source (a microphone) keeps being
read while the connection is down, and keeps every chunk from the end of the last final
on: the audio of the turn in progress. A new session after a reconnect starts by
resending that audio, so no speech falls into the gap, and its clock is placed on the
meeting clock at the kept audio's start.

Memory is bounded by `max_seconds`: during a long outage the oldest audio is dropped and
the loss is counted and reported, never silent. A source that is not live (a replay
sent as fast as possible) is instead paused while more than `ahead_seconds` of audio
waits to be sent, so nothing is dropped and memory stays small.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import AsyncIterator, Callable

from ..audio.pcm import AudioSource


class AudioPump:
    def __init__(
        self,
        source: AudioSource,
        *,
        max_seconds: float = 60.0,
        ahead_seconds: float = 2.0,
        on_loss: Callable[[float, float], None] | None = None,
        on_chunk: Callable[[bytes, int], None] | None = None,
    ):
        self.source = source
        self.sample_rate = source.sample_rate
        self.live = bool(getattr(source, "live", True))
        self.max_ms = max_seconds * 1000
        self.ahead_ms = ahead_seconds * 1000
        self.on_loss = on_loss  # (lost seconds now, lost seconds in all)
        self.on_chunk = on_chunk  # (chunk, its end on the meeting clock): each chunk as it is read
        self.kept: collections.deque[tuple[int, bytes]] = collections.deque()  # (start ms, chunk)
        self.cursor = 0  # index in `kept` of the next chunk for the current session
        self.kept_bytes = 0
        self.sent_bytes = 0  # of kept[:cursor]
        self.read_ms = 0  # meeting clock: end of the audio read so far
        self.lost_ms = 0.0
        self.finished = False  # the source has no more audio
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ the reader

    def start(self) -> None:
        self._task = asyncio.create_task(self._read(), name="captioner-audio-pump")

    async def _read(self) -> None:
        try:
            async with contextlib.aclosing(self.source.chunks()) as chunks:
                async for chunk in chunks:
                    duration = len(chunk) * 1000 // (2 * self.sample_rate)
                    self.kept.append((self.read_ms, chunk))
                    self.kept_bytes += len(chunk)
                    self.read_ms += duration
                    if self.on_chunk is not None:
                        self.on_chunk(chunk, self.read_ms)
                    self._bound()
                    self._changed.set()
                    if not self.live:
                        while self._unsent_ms() > self.ahead_ms:
                            await self._wait_change()
        except Exception as error:  # an AudioError, or a bug: the session sees it at the end
            self.error = error
        finally:
            self.finished = True
            self._changed.set()

    def _unsent_ms(self) -> float:
        return (self.kept_bytes - self.sent_bytes) * 1000 / (2 * self.sample_rate)

    def _drop_oldest(self) -> tuple[bytes, bool]:
        """Forget the oldest chunk; whether it had been sent in the current session."""
        start, chunk = self.kept.popleft()
        self.kept_bytes -= len(chunk)
        sent = self.cursor > 0
        if sent:
            self.cursor -= 1
            self.sent_bytes -= len(chunk)
        return chunk, sent

    def _bound(self) -> None:
        lost = 0.0
        while self.kept and self.read_ms - self.kept[0][0] > self.max_ms:
            chunk, sent = self._drop_oldest()
            if not sent:  # a sent chunk only loses its chance to be resent
                lost += len(chunk) * 1000 / (2 * self.sample_rate)
        if lost:
            self.lost_ms += lost
            if self.on_loss is not None:
                self.on_loss(lost / 1000, self.lost_ms / 1000)

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    # ------------------------------------------------------------ the sessions' side

    def unfinished_ms(self) -> int:
        """Audio read whose finals have not come (kept for resending), in ms."""
        return self.read_ms - self.kept[0][0] if self.kept else 0

    def rewind(self) -> int:
        """A new session begins: it resends from the kept audio's start. Returns that
        start on the meeting clock, where the new session's clock begins."""
        self.cursor = 0
        self.sent_bytes = 0
        return self.kept[0][0] if self.kept else self.read_ms

    def finalized(self, end_ms: int) -> None:
        """The service made everything up to `end_ms` final: that audio need not be kept."""
        while self.kept and self.cursor > 0:
            start, chunk = self.kept[0]
            if start + len(chunk) * 1000 // (2 * self.sample_rate) > end_ms:
                break
            self._drop_oldest()
        self._changed.set()

    def stop(self) -> None:
        """Read no more: the sessions send what was read, then end."""
        stop_source = getattr(self.source, "stop", None)
        if stop_source is not None:
            stop_source()  # a microphone may be waiting on the device: let it go now
        if self._task is not None:
            self._task.cancel()

    async def session_chunks(self) -> AsyncIterator[bytes]:
        """The chunks for one session: the kept audio first, then new audio as it comes."""
        while True:
            if self.cursor < len(self.kept):
                chunk = self.kept[self.cursor][1]
                self.cursor += 1
                self.sent_bytes += len(chunk)
                if not self.live:
                    self._changed.set()  # the reader may be waiting for room
                yield chunk
            elif self.finished:
                return
            else:
                await self._wait_change()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
