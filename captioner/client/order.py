"""Finals of several channels, delivered in the order of their start on the meeting clock.

Each channel (the microphone, the meeting's audio) has its own session, so their finals
arrive whenever each service decides a turn has ended. A caption file needs its cues in
start order (WebVTT requires it) and a reader expects the conversation in the order it
was spoken, so a final is held while another channel may still deliver one that started
earlier: while that channel has a turn in progress that started earlier, or while the
audio it has sent does not yet reach `LAG_MS` past this final's start (a service reports
speech well within that of hearing it). Never longer than `MAX_HOLD_SECONDS`, so a long
turn on one side holds the other side's captions back that much at most; a final held
that long is delivered even if it then comes before an earlier-starting one.

A final of a channel that may repeat the others (the microphone, on speakers, hears the
meeting) waits until the others cannot deliver one that *overlaps* it either, so that the
meeting's turn is known when the microphone's is checked for repeats (see bleed.py).

With one channel nothing is held. Partials are never held: they are the live view.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Callable, Protocol

from ..events import Turn

LAG_MS = 2000
MAX_HOLD_SECONDS = 5.0
CHECK_EVERY_SECONDS = 0.1


class Watermark(Protocol):
    def earliest_final_start(self) -> float:
        """No final this channel delivers from now on starts before this (meeting clock)."""


class TimeOrder:
    def __init__(self, channels: dict[str, Watermark], deliver: Callable[[Turn], None],
                 clock: Callable[[], float] = time.monotonic, repeating: frozenset[str] = frozenset({"mic"})):
        self.channels = channels
        self.repeating = repeating  # channels whose finals wait for every overlapping final
        self.deliver = deliver
        self.clock = clock
        self._held: list[tuple[float, int, float, Turn]] = []  # (start, arrival, deadline, final)
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def final(self, turn: Turn) -> None:
        if len(self.channels) < 2:
            self.deliver(turn)
            return
        start = turn.start_ms if turn.start_ms is not None else float("-inf")
        heapq.heappush(self._held, (start, next(self._arrivals), self.clock() + MAX_HOLD_SECONDS, turn))
        self.release()

    def release(self) -> None:
        """Deliver every held final nothing earlier can still come before."""
        while self._held and self._due(self._held[0]):
            self.deliver(heapq.heappop(self._held)[3])
        self._schedule()

    def held(self) -> list[Turn]:
        """The finals held now, in no particular order."""
        return [held[3] for held in self._held]

    def flush(self) -> None:
        """The end: deliver what is held, in order."""
        while self._held:
            self.deliver(heapq.heappop(self._held)[3])
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self, held: tuple[float, int, float, Turn]) -> bool:
        start, _, deadline, turn = held
        if self.clock() >= deadline:
            return True
        until = start
        if turn.channel in self.repeating and turn.end_ms is not None:
            until = turn.end_ms  # nothing may still come that overlaps it
        others = [watermark for name, watermark in self.channels.items() if name != turn.channel]
        return all(watermark.earliest_final_start() >= until for watermark in others)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            self._timer = asyncio.get_running_loop().call_later(CHECK_EVERY_SECONDS, self.release)
