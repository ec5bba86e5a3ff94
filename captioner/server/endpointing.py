"""Where turns start and end, decided frame by frame from voice activity. Pure logic.

AssemblyAI's turn settings mean: after `min_turn_silence` of silence a turn *may* end,
if the words so far sound complete; after `max_turn_silence` it *must* end. Here a
turn may end (`MayEnd`) after the short silence, and the server ends it if the
recognizer's text ends a sentence (. ? !) or if the recognizer does not punctuate at
all; otherwise it waits for speech to resume (`Resumed`) or the long silence
(`MustEnd`). Earlier still, after `paused_ms` of silence, `Paused` lets the server
start decoding the final speculatively (the rest of the postroll taken as silence), so
that it is ready when the silence says the turn has ended; if speech resumes first,
that decode is thrown away. A turn longer than `max_turn_ms` is cut at its next short pause, and at
`hard_max_turn_ms` anywhere, so no turn is held forever and decoding stays bounded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .voice import FRAME_MS  # turns are counted in the voice detector's frames


@dataclass(frozen=True)
class EndpointSettings:
    min_turn_silence_ms: int = 400
    max_turn_silence_ms: int = 1280
    max_turn_ms: int = 15_000  # then cut at the next pause of PAUSE_MS
    hard_max_turn_ms: int = 20_000  # then cut anywhere
    preroll_ms: int = 240  # audio kept before the first speech frame, so no onset is clipped
    postroll_ms: int = 240  # and after the last one
    paused_ms: int = 250  # a pause this long says Paused: the final's decode may start


ONSET_WINDOW, ONSET_NEEDED = 5, 3  # speech starts when 3 of the last 5 frames are speech
PAUSE_MS = 150


@dataclass(frozen=True)
class TurnStarted:
    start_frame: int  # first frame of the turn's audio, preroll included


@dataclass(frozen=True)
class Paused:
    end_frame: int  # the turn's audio would end here, postroll included, if the silence goes on
    heard_frame: int  # the audio heard so far, up to end_frame; the rest of the postroll is taken as silence


@dataclass(frozen=True)
class MayEnd:
    end_frame: int  # the turn's audio would end here (exclusive), postroll included


@dataclass(frozen=True)
class Resumed:
    pass


@dataclass(frozen=True)
class MustEnd:
    end_frame: int


Decision = TurnStarted | Paused | MayEnd | Resumed | MustEnd


@dataclass
class TurnDetector:
    settings: EndpointSettings = field(default_factory=EndpointSettings)
    frame: int = 0  # frames seen
    in_turn: bool = False
    start_frame: int = 0
    last_speech: int = -1  # last frame of a speech run (two speech frames in a row)
    may_end_sent: bool = False
    paused_sent: bool = False
    speech_flags: list[bool] = field(default_factory=list)  # the current turn's, from start_frame
    _recent: deque = field(default_factory=lambda: deque(maxlen=ONSET_WINDOW))
    _floor: int = 0  # a turn's audio never reaches back before the previous turn's end

    def feed(self, is_speech: bool) -> list[Decision]:
        now = self.frame
        self.frame += 1
        previous = self._recent[-1] if self._recent else False
        self._recent.append(is_speech)
        if not self.in_turn:
            if sum(self._recent) < ONSET_NEEDED:
                return []
            first_speech = now - len(self._recent) + 1 + list(self._recent).index(True)
            self.in_turn = True
            self.start_frame = max(self._floor, first_speech - frames_of(self.settings.preroll_ms))
            self.last_speech = now
            self.may_end_sent = self.paused_sent = False
            self.speech_flags = [False] * (first_speech - self.start_frame) + list(self._recent)[-(now - first_speech + 1):]
            return [TurnStarted(self.start_frame)]

        self.speech_flags.append(is_speech)
        decisions: list[Decision] = []
        if is_speech and previous:
            self.last_speech = now
            if self.paused_sent:
                self.may_end_sent = self.paused_sent = False
                decisions.append(Resumed())
        silence_ms = (now - self.last_speech) * FRAME_MS
        length_ms = (now + 1 - self.start_frame) * FRAME_MS
        settings = self.settings
        if (
            silence_ms >= settings.max_turn_silence_ms
            or length_ms >= settings.hard_max_turn_ms
            or (length_ms >= settings.max_turn_ms and silence_ms >= PAUSE_MS)
        ):
            decisions.append(self._end())
        else:
            if silence_ms >= min(settings.paused_ms, settings.min_turn_silence_ms) and not self.paused_sent:
                self.paused_sent = True
                end = self.last_speech + 1 + frames_of(settings.postroll_ms)
                decisions.append(Paused(end, min(self.frame, end)))
            if silence_ms >= settings.min_turn_silence_ms and not self.may_end_sent:
                self.may_end_sent = True
                decisions.append(MayEnd(self.end_frame))
        return decisions

    @property
    def end_frame(self) -> int:
        """Where the turn's audio ends if it ends now: postroll after its last speech."""
        return min(self.frame, self.last_speech + 1 + frames_of(self.settings.postroll_ms))

    def close_turn(self, end_frame: int) -> None:
        """The server ended the turn itself (its text sounded complete) at `end_frame`."""
        self.in_turn = False
        self._floor = end_frame
        self._recent.clear()

    def force_end(self) -> list[Decision]:
        """End the turn in progress now (ForceEndpoint, Terminate)."""
        return [self._end()] if self.in_turn else []

    def _end(self) -> MustEnd:
        end = self.end_frame
        self.close_turn(end)
        return MustEnd(end)



def frames_of(ms: int) -> int:
    """How many voice-detector frames cover `ms` milliseconds (rounded up)."""
    return -(-ms // FRAME_MS)


def speech_spans(flags: list[bool]) -> list[tuple[int, int]]:
    """(start, end) frame ranges of speech, end exclusive, relative to the flags' start."""
    spans, start = [], None
    for index, flag in enumerate(flags + [False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            spans.append((start, index))
            start = None
    return spans
