"""What every live source (the microphone, the meeting audio) shares: it does not wait for
the network (while the connection is down its audio is kept, bounded), the user can pause
it (silence is sent, so the session stays open), and its survived problems (audio
dropped, an output followed) become `on_error` events, each kind at most every 10 s."""

from __future__ import annotations

import time
from typing import Callable

from ..events import CaptionError

WARN_EVERY_SECONDS = 10.0  # repeated warnings about lost audio, at most this often


class LiveSource:
    live = True

    def __init__(self, sample_rate: int, chunk_ms: int, duration: float | None, buffer_seconds: float) -> None:
        self.sample_rate = sample_rate
        self.chunk_ms = chunk_ms
        self.duration = duration  # stop after this many seconds of audio
        self.buffer_seconds = buffer_seconds  # held while the loop catches up, before dropping any
        self.paused = False
        self._report: Callable[[CaptionError], None] | None = None
        self._last_warning: dict[str, float] = {}

    def attach(self, report: Callable[[CaptionError], None]) -> None:
        """Where to report survived problems: the engine's on_error."""
        self._report = report

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def _warn(self, kind: str, message: str, every: float = WARN_EVERY_SECONDS) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(kind, -every) < every:
            return
        self._last_warning[kind] = now
        if self._report is not None:
            self._report(CaptionError(kind="audio", message=message, fatal=False))
