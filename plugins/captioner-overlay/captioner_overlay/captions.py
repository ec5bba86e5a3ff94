"""What overlay viewers are told: caption events as small JSON messages, and the recent
history a viewer starts from when it (re)connects.

Pure: no sockets, no threads. The overlay server owns one `CaptionBoard` and touches it
only from its own event loop, so it needs no lock.

Messages (one JSON object per WebSocket text frame, `type` says which):

- `{"type": "partial", "turn": 3, "text": "...", "speaker": "A"}`: the turn in progress
  changed (an empty `text` clears it);
- `{"type": "final", "turn": 3, "text": "...", "speaker": "A", "start_ms": .., "end_ms": ..}`;
- `{"type": "translation", "turn": 3, "language": "es", "text": "..."}`;
- `{"type": "state", "state": "connecting"|"live"|"reconnecting"|"ended", "detail": "..."}`;
- `{"type": "history", "finals": [final + "translations": {lang: text}], "partial": partial
  or null, "state": state message, "languages": [...]}`: first on every connection.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from captioner import CaptionError, MeetingSummary, Session, Translation, Turn

HISTORY_FINALS = 50  # what a (re)connecting viewer gets; the page shows at most this many


@dataclass
class FinalLine:
    turn: int
    text: str
    speaker: str | None
    start_ms: int | None
    end_ms: int | None
    translations: dict[str, str] = field(default_factory=dict)

    def message(self) -> dict:
        return {"type": "final", "turn": self.turn, "text": self.text, "speaker": self.speaker,
                "start_ms": self.start_ms, "end_ms": self.end_ms}


class CaptionBoard:
    """The captions as a viewer should see them now, updated event by event."""

    def __init__(self, history: int = HISTORY_FINALS):
        self.finals: deque[FinalLine] = deque(maxlen=history)
        self.partial: dict | None = None
        self.state = {"type": "state", "state": "connecting", "detail": ""}
        self.languages: list[str] = []  # translation languages seen, in order of arrival
        self._fatal = ""

    def on_partial(self, turn: Turn) -> dict:
        self.partial = {"type": "partial", "turn": turn.turn_order, "text": turn.display_text, "speaker": turn.speaker}
        return self.partial

    def on_final(self, turn: Turn) -> dict:
        line = FinalLine(turn.turn_order, turn.text, turn.speaker, turn.start_ms, turn.end_ms)
        self.finals.append(line)
        if self.partial is not None and self.partial["turn"] <= turn.turn_order:
            self.partial = None  # the final replaces it
        return line.message()

    def on_translation(self, translation: Translation) -> dict:
        order = translation.turn.turn_order
        for line in reversed(self.finals):
            if line.turn == order:
                line.translations[translation.language] = translation.text
                break
        if translation.language not in self.languages:
            self.languages.append(translation.language)
        return {"type": "translation", "turn": order, "language": translation.language, "text": translation.text}

    def on_session_begin(self, session: Session) -> dict:
        return self._set_state("live")

    def on_error(self, error: CaptionError) -> dict | None:
        if error.fatal:
            self._fatal = error.message  # said when the run ends, just after
            return None
        if error.kind == "connection":
            return self._set_state("reconnecting", error.message)
        return None  # a plugin's or the audio's problem: the captions go on

    def on_meeting_end(self, summary: MeetingSummary) -> dict:
        return self._set_state("ended", self._fatal)

    def _set_state(self, state: str, detail: str = "") -> dict:
        self.state = {"type": "state", "state": state, "detail": detail}
        return self.state

    def snapshot(self) -> dict:
        """Everything a viewer that connects now needs to show what the others show."""
        return {
            "type": "history",
            "finals": [{**line.message(), "translations": dict(line.translations)} for line in self.finals],
            "partial": self.partial,
            "state": self.state,
            "languages": list(self.languages),
        }


def encode(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
