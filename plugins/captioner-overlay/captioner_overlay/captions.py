"""What overlay viewers are told: caption events as small JSON messages, and the recent
history a viewer starts from when it (re)connects.

Pure: no sockets, no threads. The overlay server owns one `CaptionBoard` and touches it
only from its own event loop, so it needs no lock.

Messages (one JSON object per WebSocket text frame, `type` says which):

- `{"type": "partial", "turn": 3, "text": "...", "speaker": "Meeting A", "channel": "meeting"}`:
  a channel's turn in progress changed (an empty `text` clears it); `speaker` is who
  spoke as captioner shows it (the turn's label), `channel` "mic" or "meeting";
- `{"type": "final", "turn": 3, "text": "...", "speaker": .., "channel": .., "start_ms": .., "end_ms": ..}`;
- `{"type": "translation", "turn": 3, "language": "es", "text": "..."}`;
- `{"type": "state", "state": "connecting"|"live"|"reconnecting"|"ended", "detail": "..."}`;
- `{"type": "history", "finals": [final + "translations": {lang: text}], "partials": [the
  partial of each channel], "state": state message, "languages": [...]}`: first on every
  connection.
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
    speaker: str | None  # who spoke, as shown: the turn's label ("You", "Meeting A")
    start_ms: int | None
    end_ms: int | None
    channel: str = "mic"
    translations: dict[str, str] = field(default_factory=dict)

    def message(self) -> dict:
        return {"type": "final", "turn": self.turn, "text": self.text, "speaker": self.speaker,
                "channel": self.channel, "start_ms": self.start_ms, "end_ms": self.end_ms}


class CaptionBoard:
    """The captions as a viewer should see them now, updated event by event."""

    def __init__(self, history: int = HISTORY_FINALS):
        self.finals: deque[FinalLine] = deque(maxlen=history)
        self.partials: dict[str, dict] = {}  # channel -> its turn in progress
        self.state = {"type": "state", "state": "connecting", "detail": ""}
        self.languages: list[str] = []  # translation languages seen, in order of arrival
        self._fatal = ""

    def on_partial(self, turn: Turn) -> dict:
        partial = {"type": "partial", "turn": turn.turn_order, "text": turn.display_text, "speaker": turn.label,
                   "channel": turn.channel}
        self.partials[turn.channel] = partial
        return partial

    def on_final(self, turn: Turn) -> dict:
        line = FinalLine(turn.turn_order, turn.text, turn.label, turn.start_ms, turn.end_ms, turn.channel)
        self.finals.append(line)
        partial = self.partials.get(turn.channel)
        if partial is not None and partial["turn"] <= turn.turn_order:
            del self.partials[turn.channel]  # the final replaces it
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
            "partials": list(self.partials.values()),
            "state": self.state,
            "languages": list(self.languages),
        }


def encode(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
