"""A plugin that keeps every event it receives, and checks the promises every caption stream keeps."""

from __future__ import annotations

from ..events import CaptionError, MeetingSummary, Session, Translation, Turn
from ..hookspecs import hookimpl


class EventRecorder:
    """A plugin that records every event, in the order it received them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    @hookimpl
    def on_session_begin(self, session: Session) -> None:
        self.events.append(("session_begin", session))

    @hookimpl
    def on_partial(self, turn: Turn) -> None:
        self.events.append(("partial", turn))

    @hookimpl
    def on_final(self, turn: Turn) -> None:
        self.events.append(("final", turn))

    @hookimpl
    def on_error(self, error: CaptionError) -> None:
        self.events.append(("error", error))

    @hookimpl
    def on_translation(self, translation: Translation) -> None:
        self.events.append(("translation", translation))

    @hookimpl
    def on_meeting_end(self, summary: MeetingSummary) -> None:
        self.events.append(("meeting_end", summary))

    def _of(self, kind: str) -> list:
        return [event for name, event in self.events if name == kind]

    @property
    def finals(self) -> list[Turn]:
        return self._of("final")

    @property
    def partials(self) -> list[Turn]:
        return self._of("partial")

    @property
    def errors(self) -> list[CaptionError]:
        return self._of("error")

    @property
    def sessions(self) -> list[Session]:
        return self._of("session_begin")

    @property
    def translations(self) -> list[Translation]:
        return self._of("translation")

    @property
    def summary(self) -> MeetingSummary | None:
        """What on_meeting_end said, once it did."""
        ends = self._of("meeting_end")
        return ends[-1] if ends else None

    @property
    def final_texts(self) -> list[str]:
        return [turn.text for turn in self.finals]

    def problems(self, audio_ms: float | None = None) -> list[str]:
        """What breaks the promises every caption stream keeps, whatever the recognizer:
        finals numbered in increasing order, each number once (a reconnect may skip
        numbers); no partial after its turn's final; every final has words, whose times
        only go forward (and stay within `audio_ms`, when given). Empty when all hold:
        `assert not result.problems(duration_ms)`."""
        found = []
        orders = [turn.turn_order for turn in self.finals]
        if any(a >= b for a, b in zip(orders, orders[1:])):
            found.append(f"finals are not numbered in increasing order, once each: {orders}")
        final_seen: set[int] = set()
        for kind, event in self.events:
            if kind == "final":
                final_seen.add(event.turn_order)
            elif kind == "partial" and event.turn_order in final_seen:
                found.append(f"a partial of turn {event.turn_order} after its final: {event.text!r}")
        found += [f"final {turn.turn_order} has no words" for turn in self.finals if not turn.words]
        words = [word for turn in self.finals for word in turn.words]
        found += [f"word {w.text!r} ends before it starts ({w.start_ms}-{w.end_ms})" for w in words if w.start_ms > w.end_ms]
        found += [
            f"word times go backwards: {a.text!r} ends at {a.end_ms}, {b.text!r} starts at {b.start_ms}"
            for a, b in zip(words, words[1:])
            if a.end_ms > b.start_ms
        ]
        if words and (words[0].start_ms < 0 or (audio_ms is not None and words[-1].end_ms > audio_ms + 100)):
            found.append(f"word times {words[0].start_ms}-{words[-1].end_ms} ms fall outside the audio")
        return found
