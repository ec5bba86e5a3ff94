"""No double captions on speakers: the meeting's voices, heard again by the microphone.

When the user is on speakers the microphone also hears the meeting, delayed and quieter.
Captioned as it is, every meeting sentence would come out twice, once as "mic". Measured
on the fixture voices (BENCHMARKS.md has the figures): an echo canceller alone leaves a
residue the recognizer turns into words; what works is to find the echo's delay and
level, mute the microphone's audio where all it holds is that echo, and, as a backstop,
drop from a microphone final the words that repeat an overlapping meeting final.

- `EchoTracker`: the delay (to the sample) and gain of the meeting audio in the
  microphone's, from the two streams alone: the 10 ms log-energy envelopes
  cross-correlated over 0-500 ms, refined by GCC-PHAT within 10 ms, accepted when the
  peak is sharp and two estimates agree; the gain is a low percentile of mic/meeting
  energy over loud meeting frames (the user's voice only adds energy). With headphones
  there is no echo, the tracker never locks, and nothing is muted.
- `EchoGate`: per 10 ms frame, the echo the microphone should hold is gain × the meeting
  energy a delay earlier (with a decaying tail for the room); a frame whose energy is
  not 2.5 times that is echo and is muted by 40 dB, so the voice detector and the
  recognizer never hear it. 30 ms of lookahead and 120 ms of hangover keep the user's
  word edges.
- `without_repeats`: the text backstop, for the time before the tracker locks: a
  microphone final loses the words that repeat an overlapping meeting final (with the
  words' times, a two-word repeat at the echo's time is enough, and a word or two the
  recognizer misheard beside it goes too).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from difflib import SequenceMatcher
from dataclasses import replace
from typing import AsyncIterator

import numpy as np

from ..audio.pcm import AudioSource
from ..events import Turn

RATE = 16000
FRAME = 160  # 10 ms
MAX_LAG = 50  # frames: echoes up to 500 ms late
WINDOW = 400  # frames analysed: 4 s
GCC_SAMPLES = 32768  # about 2 s, for the sample-accurate refinement
LOUD = 32768.0**2 * 10 ** (-45 / 10)  # a meeting frame worth learning from: -45 dBFS
NOISE = 32768.0**2 * 10 ** (-62 / 10)
ECHO_MARGIN = 2.5  # a frame is the user's when it holds this much more than the predicted echo
MUTED = 0.01  # -40 dB
LOOKAHEAD, HANGOVER = 3, 12  # frames
TAP_WAIT_SECONDS = 0.1  # for the meeting samples a microphone chunk is compared with


class History:
    """The last `size` samples, appended a frame at a time; `view()` copies nothing."""

    def __init__(self, size: int):
        self.size = size
        self.buffer = np.zeros(2 * size)
        self.end = size  # starts full of silence

    def extend(self, samples: np.ndarray) -> None:
        if self.end + len(samples) > len(self.buffer):
            self.buffer[: self.size] = self.buffer[self.end - self.size : self.end]
            self.end = self.size
        self.buffer[self.end : self.end + len(samples)] = samples
        self.end += len(samples)

    def view(self) -> np.ndarray:
        return self.buffer[self.end - self.size : self.end]


class EchoTracker:
    """The meeting audio's delay (samples) and energy gain in the microphone's audio."""

    def __init__(self) -> None:
        self.meeting = History(GCC_SAMPLES + (MAX_LAG + 1) * FRAME)
        self.mic = History(GCC_SAMPLES)
        self.meeting_energy: deque[float] = deque(maxlen=WINDOW + MAX_LAG)
        self.mic_energy: deque[float] = deque(maxlen=WINDOW + MAX_LAG)
        self.ratios: deque[float] = deque(maxlen=600)  # mic / delayed meeting energy, loud frames
        self.frames = 0
        self.delay: int | None = None
        self.gain: float | None = None  # of energy
        self._candidate: int | None = None

    def push(self, meeting: np.ndarray, mic: np.ndarray) -> None:
        """One 10 ms frame of each, as float64."""
        self.meeting.extend(meeting)
        self.mic.extend(mic)
        self.meeting_energy.append(float(meeting @ meeting) / FRAME)
        self.mic_energy.append(float(mic @ mic) / FRAME)
        self.frames += 1
        if self.delay is not None:
            lag = round(self.delay / FRAME)
            if len(self.meeting_energy) > lag and self.meeting_energy[-1 - lag] > LOUD:
                self.ratios.append(self.mic_energy[-1] / self.meeting_energy[-1 - lag])
        if self.frames % (100 if self.delay is not None else 50) == 0 and self.frames >= 100:
            self._estimate()
            if self.delay is not None and len(self.ratios) >= 30:
                self.gain = float(np.percentile(self.ratios, 25))

    def _estimate(self) -> None:
        meeting, mic = np.array(self.meeting_energy), np.array(self.mic_energy)
        if np.mean(meeting > LOUD) < 0.15 or self.frames * FRAME < GCC_SAMPLES // 2:
            return  # the meeting is mostly silent: nothing to learn from
        a, b = np.log10(meeting + NOISE), np.log10(mic + NOISE)
        a, b = a - a.mean(), b - b.mean()
        n = len(a)
        scores = [np.dot(a[: n - k], b[k:]) / (np.linalg.norm(a[: n - k]) * np.linalg.norm(b[k:]) + 1e-12)
                  for k in range(MAX_LAG + 1)]
        lag = int(np.argmax(scores))
        if scores[lag] < 0.3:
            return
        # GCC-PHAT on the last 2 s, the meeting shifted by the coarse lag: only the residual
        # lags within 10 ms are searched, so a circular correlation will do.
        meeting_samples = self.meeting.view()
        end = len(meeting_samples) - lag * FRAME
        spectrum = np.fft.rfft(self.mic.view()) * np.conj(np.fft.rfft(meeting_samples[end - GCC_SAMPLES : end]))
        correlation = np.fft.irfft(spectrum / (np.abs(spectrum) + 1e-9), GCC_SAMPLES)
        around = np.concatenate([correlation[-FRAME:], correlation[: FRAME + 1]])
        best = int(np.argmax(around))
        if around[best] / (np.std(correlation) + 1e-12) < 15:
            return  # not sharp: double talk, or no echo at all
        delay = max(0, lag * FRAME + best - FRAME)
        if self._candidate is not None and abs(delay - self._candidate) <= 16:
            if self.delay is None or abs(delay - self.delay) > 16:
                self.ratios.clear()
                self.delay = delay
        self._candidate = delay


class EchoGate:
    """Mutes the microphone's frames that hold nothing but the meeting's echo."""

    def __init__(self) -> None:
        self.tracker = EchoTracker()
        self.predicted = 0.0
        self.held: deque[tuple[np.ndarray, bool]] = deque()  # frames kept for the lookahead
        self.hangover = 0
        self.meeting_buffer = np.zeros(0)
        self.mic_buffer = np.zeros(0)
        self.out = np.zeros(0, np.int16)

    def process(self, meeting: np.ndarray, mic: np.ndarray) -> np.ndarray:
        """The microphone's samples, echo-only frames muted, LOOKAHEAD frames late."""
        self.meeting_buffer = np.concatenate([self.meeting_buffer, meeting.astype(np.float64)])
        self.mic_buffer = np.concatenate([self.mic_buffer, mic.astype(np.float64)])
        produced = []
        while len(self.meeting_buffer) >= FRAME and len(self.mic_buffer) >= FRAME:
            frame = self._frame(self.meeting_buffer[:FRAME], self.mic_buffer[:FRAME])
            self.meeting_buffer, self.mic_buffer = self.meeting_buffer[FRAME:], self.mic_buffer[FRAME:]
            if frame is not None:
                produced.append(frame)
        self.out = np.concatenate([self.out, *produced]) if produced else self.out
        needed = len(mic)
        result = self.out[:needed]
        self.out = self.out[needed:]
        return np.concatenate([np.zeros(needed - len(result), np.int16), result])  # silence while filling

    def _frame(self, meeting: np.ndarray, mic: np.ndarray) -> np.ndarray | None:
        tracker = self.tracker
        tracker.push(meeting, mic)
        self.held.append((mic, self._users(tracker)))
        if len(self.held) <= LOOKAHEAD:
            return None
        frame, users = self.held.popleft()
        if users or any(later for _, later in self.held):
            self.hangover = HANGOVER
        elif self.hangover:
            self.hangover -= 1
        scale = 1.0 if self.hangover or users else MUTED
        return np.clip(np.round(frame * scale), -32768, 32767).astype(np.int16)

    def _users(self, tracker: EchoTracker) -> bool:
        """Whether the newest microphone frame holds more than the meeting's echo."""
        if tracker.delay is None or tracker.gain is None:
            return True  # no echo found (headphones, or not yet): nothing is muted
        energies, lag = tracker.meeting_energy, round(tracker.delay / FRAME)
        at = len(energies) - 1 - lag
        nearby = [energies[i] for i in range(max(0, at - 1), min(len(energies), at + 2))] if at >= 0 else [0.0]
        self.predicted = max(tracker.gain * max(nearby), self.predicted * 10 ** -0.4)  # a 4 dB/10 ms room tail
        return tracker.mic_energy[-1] > ECHO_MARGIN * self.predicted + 4 * NOISE


class MeetingTap:
    """The meeting source, unchanged, keeping its samples for the microphone's gate."""

    def __init__(self, source: AudioSource):
        self.source = source
        self.pending: deque[np.ndarray] = deque()
        self.have = 0
        self.changed = asyncio.Event()
        self.ended = False

    def __getattr__(self, name: str):
        return getattr(self.source, name)  # sample_rate, description, pause, stop, ...

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.source.chunks():
                samples = np.frombuffer(chunk, "<i2")
                self.pending.append(samples)
                self.have += len(samples)
                self.changed.set()
                yield chunk
        finally:
            self.ended = True
            self.changed.set()

    async def take(self, count: int) -> np.ndarray:
        """The next `count` meeting samples; silence for those not come within
        TAP_WAIT_SECONDS (the meeting stalled): the gate then sees no echo."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAP_WAIT_SECONDS
        while self.have < count and not self.ended and loop.time() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        parts, got = [], 0
        while self.pending and got < count:
            part = self.pending.popleft()
            if got + len(part) > count:
                self.pending.appendleft(part[count - got :])
                part = part[: count - got]
            parts.append(part)
            got += len(part)
        self.have -= got
        return np.concatenate([*parts, np.zeros(count - got, np.int16)])


class MicWithoutEcho:
    """The microphone source, with the frames that hold only the meeting's echo muted."""

    def __init__(self, mic: AudioSource, meeting: MeetingTap):
        self.mic, self.meeting = mic, meeting
        self.gate = EchoGate()

    def __getattr__(self, name: str):
        return getattr(self.mic, name)

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.mic.chunks():
            samples = np.frombuffer(chunk, "<i2")
            reference = await self.meeting.take(len(samples))
            yield self.gate.process(reference, samples).astype("<i2").tobytes()


def without_echo(sources: dict[str, AudioSource]) -> dict[str, AudioSource]:
    """With both a microphone and meeting audio, the microphone without the meeting's echo."""
    if "mic" not in sources or "meeting" not in sources:
        return sources
    tap = MeetingTap(sources["meeting"])
    return {"mic": MicWithoutEcho(sources["mic"], tap), "meeting": tap}


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]", " ", text.lower().replace("-", " ")).split()


ALIGNED_MS = (-300, 1000)  # an echo word's start, against the meeting word's: delay plus the recognizers' timing error
ABSORBED = 2  # words misheard in the echo ("a light" for "the light") dropped beside a repeat


class _Spoken:
    """The words of finals in order, normalised, each with the token it came from and, when
    its turn's words line up with its text, its start."""

    def __init__(self, *turns: Turn):
        self.tokens: list[str] = []
        self.words: list[str] = []
        self.token_of: list[int] = []
        self.starts: list[int | None] = []
        for turn in turns:
            tokens = turn.text.split()
            timed = len(turn.words) == len(tokens)
            for index, token in enumerate(tokens):
                for word in _words(token):
                    self.words.append(word)
                    self.token_of.append(len(self.tokens) + index)
                    self.starts.append(turn.words[index].start_ms if timed else None)
            self.tokens += tokens


def _aligned(mic: _Spoken, i: int, meeting: _Spoken, j: int, size: int) -> bool:
    low, high = ALIGNED_MS
    pairs = [(mic.starts[i + k], meeting.starts[j + k]) for k in range(size)]
    return all(a is not None and b is not None and low <= a - b <= high for a, b in pairs)


def _repeated(mic: _Spoken, meeting: _Spoken, span: tuple[int, int] | None) -> set[int]:
    """Indexes of the microphone's words that repeat the meeting: runs of three or more
    words, of two at the same time (shifted by the echo's delay), any repeat in a final of
    three words or fewer; and, beside those, up to ABSORBED words heard during the
    meeting's turn, the echo misheard."""
    repeated: set[int] = set()
    for block in SequenceMatcher(None, mic.words, meeting.words, autojunk=False).get_matching_blocks():
        if block.size >= 3 or (block.size and len(mic.words) <= 3) or \
                (block.size == 2 and _aligned(mic, block.a, meeting, block.b, 2)):
            repeated.update(range(block.a, block.a + block.size))
    if not repeated or span is None:
        return repeated
    runs, run = [], []  # the unrepeated runs, each with what bounds it
    for index in range(len(mic.words) + 1):
        if index < len(mic.words) and index not in repeated:
            run.append(index)
        elif run:
            runs.append(run)
            run = []
    low, high = span
    for run in runs:
        heard_then = all(mic.starts[i] is not None and low <= mic.starts[i] <= high for i in run)
        beside = run[0] - 1 in repeated or run[-1] + 1 in repeated
        if len(run) <= ABSORBED and heard_then and beside:
            repeated.update(run)
    return repeated


def without_repeats(turn: Turn, meeting_finals: list[Turn]) -> Turn | None:
    """A microphone final without the words that repeat the meeting finals overlapping
    it; None when most of it (60%) repeats: then it is the echo, not the user."""
    start, end = turn.start_ms or 0, turn.end_ms or 0
    overlapping = [t for t in meeting_finals if (t.start_ms or 0) < end + 500 and (t.end_ms or 0) + 1000 > start]
    mic = _Spoken(turn)
    if not mic.words or not overlapping:
        return turn
    meeting = _Spoken(*overlapping)
    span = None
    if all(t.start_ms is not None and t.end_ms is not None for t in overlapping):
        span = (min(t.start_ms for t in overlapping) + ALIGNED_MS[0], max(t.end_ms for t in overlapping) + ALIGNED_MS[1])
    repeated = _repeated(mic, meeting, span)
    if not repeated:
        return turn
    if len(repeated) >= 0.6 * len(mic.words):
        return None
    dropped = {mic.token_of[i] for i in repeated}
    dropped -= {mic.token_of[i] for i in range(len(mic.words)) if i not in repeated}  # a token partly the user's stays
    kept = [index for index in range(len(mic.tokens)) if index not in dropped]
    if not kept:
        return None
    words = tuple(turn.words[i] for i in kept) if len(turn.words) == len(mic.tokens) else turn.words
    return replace(turn, text=" ".join(mic.tokens[i] for i in kept), words=words,
                   start_ms=words[0].start_ms if words else turn.start_ms,
                   end_ms=words[-1].end_ms if words else turn.end_ms)
