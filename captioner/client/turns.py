"""From the service's turn updates to the partials and finals plugins receive.

Pure logic, no I/O. It puts times on the meeting clock and guarantees the promise of
`on_final`: each turn is final exactly once, in order.

- The service may send a turn's final twice (unformatted, then formatted when
  `format_turns` is on). When formatting was asked for, the unformatted one is shown as
  a partial and the formatted one is the final; a turn whose formatted version never
  comes is delivered when the next final arrives, or at the end.
- Turns are numbered for the whole meeting, across channels: a reconnect starts the
  service's numbering again at 0, plugins' numbering goes on (a number may be skipped
  after a reconnect, never reused; with two channels, one counter serves both).
- Each turn says whose it is: its `channel`, and a `label` for people ("You",
  "Meeting A": the channel's label with the service's speaker label, when there are
  two channels; the speaker label alone when there is one).
- After a reconnect the audio of the turn in progress is sent again, so the new session
  may repeat words already final. Words that end before the last final's end are
  dropped, and a final with nothing left is not delivered.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from ..events import Turn, Word
from ..protocol.messages import TurnUpdate


class TurnAssembler:
    def __init__(self, *, wait_for_formatted: bool = False, channel: str = "mic", channel_label: str | None = None,
                 numbers: itertools.count | None = None):
        self.wait_for_formatted = wait_for_formatted
        self.channel = channel
        self.channel_label = channel_label  # None: one channel, nothing to tell apart
        self._numbers = numbers if numbers is not None else itertools.count()  # the meeting's turn numbers
        self.session_id = ""
        self.offset_ms = 0
        self.final_end_ms = -1  # meeting clock: everything up to here is final
        self._numbered: dict[int, int] = {}  # this session's turn_order -> meeting number
        self._last_final_order = -1  # this session's
        self._held: dict[int, Turn] = {}  # unformatted finals waiting for their formatted twin

    def begin(self, session_id: str, offset_ms: int = 0) -> list[Turn]:
        """A new session starts at `offset_ms` on the meeting clock; whatever the previous
        one left unfinished is delivered."""
        delivered = self.flush()
        self.session_id, self.offset_ms = session_id, offset_ms
        self._numbered.clear()
        self._last_final_order = -1
        return delivered

    def feed(self, update: TurnUpdate) -> list[Turn]:
        if update.turn_order <= self._last_final_order:
            return []  # a late partial or a repeated final of a turn already delivered
        turn = self._event(update)
        if turn is None or (update.end_of_turn and not turn.text.strip() and not turn.words):
            if update.end_of_turn:
                self._last_final_order = update.turn_order  # nothing new in it: no final to deliver
            return []
        turn = replace(turn, turn_order=self._number(update.turn_order))  # numbered once it is shown
        if not update.end_of_turn:
            return [turn]
        if self.wait_for_formatted and not update.is_formatted:
            # An earlier turn still waiting for its formatting will not get it now:
            # deliver it as it is, so at most one turn is ever held back.
            released = self._finals_before(update.turn_order)
            self._held[update.turn_order] = turn
            return released + [replace(turn, is_final=False)]
        return self._finals_through(update.turn_order, turn)

    def flush(self) -> list[Turn]:
        """Deliver the finals still held back (the session ended before their formatting)."""
        if not self._held:
            return []
        return self._finals_through(max(self._held), None)

    def _finals_before(self, order: int) -> list[Turn]:
        earlier = sorted(o for o in self._held if o < order)
        if earlier:
            self._last_final_order = earlier[-1]
        return [self._final(self._held.pop(o)) for o in earlier]

    def _finals_through(self, order: int, turn: Turn | None) -> list[Turn]:
        finals = self._finals_before(order)
        held = self._held.pop(order, None)
        finals.append(self._final(turn or held))  # type: ignore[arg-type]
        self._last_final_order = order
        # Orders up to this one are never looked up again (feed() drops them): forget
        # them, so an hour-long session keeps no per-turn state.
        for done in [o for o in self._numbered if o <= order]:
            del self._numbered[done]
        return finals

    def _final(self, turn: Turn) -> Turn:
        if turn.end_ms is not None:
            self.final_end_ms = max(self.final_end_ms, turn.end_ms)
        return turn

    def _number(self, order: int) -> int:
        if order not in self._numbered:
            self._numbered[order] = next(self._numbers)
        return self._numbered[order]

    def _event(self, update: TurnUpdate) -> Turn | None:
        offset = self.offset_ms
        words = tuple(
            Word(
                text=w.text,
                start_ms=w.start + offset,
                end_ms=w.end + offset,
                confidence=w.confidence,
                is_final=w.is_final,
                speaker=w.speaker,
            )
            for w in update.words
        )
        text = update.transcript
        fresh = tuple(w for w in words if w.end_ms > self.final_end_ms)
        if len(fresh) < len(words):  # resent audio: some of these words are final already
            if not fresh:
                return None
            words = fresh
            text = " ".join(w.text for w in words if w.is_final or update.end_of_turn)
        return Turn(
            session_id=self.session_id,
            turn_order=-1,  # numbered by feed(), for the whole meeting
            text=text,
            words=words,
            is_final=update.end_of_turn,
            is_formatted=update.is_formatted,
            start_ms=words[0].start_ms if words else None,
            end_ms=words[-1].end_ms if words else None,
            speaker=update.speaker,
            language=update.language,
            channel=self.channel,
            label=" ".join(filter(None, (self.channel_label, update.speaker))) or None,
        )
