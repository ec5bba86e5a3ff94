"""What a meeting counts for its summary: sessions, audio, partials, finals, errors.

Errors are kept bounded (a long meeting with a flaky server must not grow memory), and
a problem a server repeats is reported once, then counted: a hundred identical bad
frames are one line and a count at the end, not a hundred lines.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable

from ..events import CaptionError, MeetingSummary

# Keep this many errors in the summary (and every fatal one), and count the rest.
MAX_KEPT_ERRORS = 100
# Survived problems reported once, then counted: what a misbehaving server repeats.
REPEATABLE_KINDS = frozenset({"protocol", "server"})


class MeetingTally:
    def __init__(self, emit_error: Callable[[CaptionError], None]):
        self.emit_error = emit_error
        self.session_ids: list[str] = []
        self.errors: list[CaptionError] = []  # the first few and every fatal one
        self.error_count = 0
        self.partials = self.finals = 0
        self.audio_seconds_sent = 0.0  # over all sessions, resent audio included
        self.audio_seconds_lost = 0.0
        self.reconnects = 0
        self.echo_finals_dropped = 0  # microphone finals that only repeated the meeting (speakers)
        self.channels: set[str] = set()
        self.terminated: set[str] = set()  # channels whose service confirmed the end
        self.server_audio_seconds: int | None = None  # the services' own counts, added up
        self._repeats: dict[tuple[str, str], list] = {}  # (kind, shape) -> [first report, repeats]

    def report(self, error: CaptionError) -> None:
        """Count `error` and deliver it to the plugins, unless it repeats an earlier one."""
        self.error_count += 1
        if not error.fatal and error.kind in REPEATABLE_KINDS:
            key = (error.kind, re.sub(r"\d+", "#", error.message))
            if key in self._repeats:
                self._repeats[key][1] += 1
                return
            self._repeats[key] = [error, 0]
        self._keep(error)
        self.emit_error(error)

    def summarise_repeats(self) -> None:
        """One more report per repeated problem: how many times it came again."""
        for first, times in self._repeats.values():
            if times:
                summary = replace(first, message=f"{first.message} (and {times} more like it)")
                self._keep(summary)
                self.emit_error(summary)
        self._repeats.clear()

    def _keep(self, error: CaptionError) -> None:
        if error.fatal or len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)

    def termination(self, channel: str, audio_seconds: int | None) -> None:
        self.terminated.add(channel)
        if audio_seconds is not None:
            self.server_audio_seconds = (self.server_audio_seconds or 0) + audio_seconds

    def summary(self) -> MeetingSummary:
        return MeetingSummary(
            session_ids=tuple(self.session_ids),
            audio_seconds_sent=self.audio_seconds_sent,
            reconnects=self.reconnects,
            audio_seconds_lost=round(self.audio_seconds_lost, 3),
            partials=self.partials,
            finals=self.finals,
            errors=tuple(self.errors),
            error_count=self.error_count,
            terminated=bool(self.channels) and self.terminated >= self.channels,
            server_audio_seconds=self.server_audio_seconds,
        )
