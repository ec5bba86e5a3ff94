"""What the service would say, given a transcript script and how much audio has arrived.

Pure and clocked by received audio, not the wall clock, so the fake server answers the
same at any replay speed. As received audio passes the end of each word it announces a
partial `Turn`; once `min_turn_silence` of audio has passed the end of a turn's last
word, it announces the final (and a formatted final when `format_turns` is on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..protocol.messages import SessionParams, TurnUpdate, WireWord
from .script import ScriptTurn, ScriptWord, TranscriptScript

DEFAULT_MIN_TURN_SILENCE_MS = 400  # the service's documented default


@dataclass
class ScriptPlayer:
    """`origin_ms`: where on the script's clock this session's audio starts (a client
    that reconnects resends from the middle); words before it were never heard here, and
    times are reported on the session's own clock, as the service does."""

    script: TranscriptScript
    params: SessionParams
    origin_ms: float = 0
    turn_order: int = 0  # of the service turn in progress
    _turn_index: int = 0  # the script turn being heard
    _first_word: int = 0  # where the service turn in progress starts within it
    _next_word: int = 0  # the next word not yet announced

    def __post_init__(self) -> None:
        turns = self.script.turns
        while self._turn_index < len(turns) and turns[self._turn_index].end <= self.origin_ms:
            self._turn_index += 1
        if self._turn_index < len(turns):
            words = turns[self._turn_index].words
            while self._next_word < len(words) and words[self._next_word].start < self.origin_ms:
                self._next_word += 1
            self._first_word = self._next_word
            if self._next_word == len(words):  # nothing of that turn is left to hear
                self._turn_index += 1
                self._first_word = self._next_word = 0

    @property
    def min_turn_silence(self) -> int:
        value = self.params.min_turn_silence
        return DEFAULT_MIN_TURN_SILENCE_MS if value is None else value

    def update(self, settings: dict) -> None:
        """Apply an UpdateConfiguration."""
        changes = {}
        for key in ("min_turn_silence", "max_turn_silence"):
            if key in settings:
                changes[key] = int(settings[key])
        if "min_end_of_turn_silence_when_confident" in settings and "min_turn_silence" not in changes:
            changes["min_turn_silence"] = int(settings["min_end_of_turn_silence_when_confident"])
        if "format_turns" in settings:
            changes["format_turns"] = bool(settings["format_turns"])
        self.params = replace(self.params, **changes)

    def advance(self, session_ms: float) -> list[TurnUpdate]:
        """Everything said up to `session_ms` of received audio."""
        audio_ms = session_ms + self.origin_ms
        updates: list[TurnUpdate] = []
        while self._turn_index < len(self.script.turns):
            turn = self.script.turns[self._turn_index]
            while self._next_word < len(turn.words) and turn.words[self._next_word].end <= audio_ms:
                self._next_word += 1
                updates.append(self._partial(turn))
            if self._next_word == len(turn.words) and audio_ms >= turn.end + self.min_turn_silence:
                updates += self._end_turn(turn)
                continue
            break
        return updates

    def force_endpoint(self) -> list[TurnUpdate]:
        """End the turn in progress now, with the words heard so far."""
        if self._turn_index >= len(self.script.turns) or self._next_word == self._first_word:
            return []
        return self._end_turn(self.script.turns[self._turn_index])

    def _heard(self, turn: ScriptTurn) -> tuple[ScriptWord, ...]:
        return turn.words[self._first_word : self._next_word]

    def _partial(self, turn: ScriptTurn) -> TurnUpdate:
        words = self._heard(turn)
        # As the service does: the newest word may still change, and `transcript`
        # holds only the settled ones.
        wire = [self._wire(word, turn, is_final=i < len(words) - 1) for i, word in enumerate(words)]
        return TurnUpdate(
            turn_order=self.turn_order,
            transcript=" ".join(word.text for word in words[:-1]),
            words=tuple(wire),
            end_of_turn=False,
            end_of_turn_confidence=0.1,
            speaker=self._speaker(turn),
        )

    def _end_turn(self, turn: ScriptTurn) -> list[TurnUpdate]:
        words = self._heard(turn)
        if not words:
            return []
        final = TurnUpdate(
            turn_order=self.turn_order,
            transcript=" ".join(word.text for word in words),
            words=tuple(self._wire(word, turn) for word in words),
            end_of_turn=True,
            end_of_turn_confidence=0.9,
            speaker=self._speaker(turn),
        )
        updates = [final]
        if self.params.format_turns:
            updates.append(
                replace(
                    final,
                    transcript=" ".join(word.formatted for word in words),
                    words=tuple(self._wire(word, turn, formatted=True) for word in words),
                    is_formatted=True,
                )
            )
        self.turn_order += 1
        if self._next_word == len(turn.words):
            self._turn_index += 1
            self._next_word = 0
        self._first_word = self._next_word
        return updates

    def _speaker(self, turn: ScriptTurn) -> str | None:
        return turn.speaker if self.params.speaker_labels else None

    def _wire(self, word: ScriptWord, turn: ScriptTurn, is_final: bool = True, formatted: bool = False) -> WireWord:
        return WireWord(
            text=word.formatted if formatted else word.text,
            start=round(word.start - self.origin_ms),
            end=round(word.end - self.origin_ms),
            confidence=word.confidence,
            is_final=is_final,
            speaker=self._speaker(turn),
        )
