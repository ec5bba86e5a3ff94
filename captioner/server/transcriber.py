"""One session of the embedded server: audio in, turn updates out.

`RecognizerTranscriber` runs two tasks per session. The analyser reads 30 ms frames in
order, asks the voice detector and `TurnDetector` where turns start and end, and queues
decode jobs; when a pause may end a turn, it waits for that decode before reading on,
so turn boundaries come out the same at any replay speed. The lane runs the jobs one at
a time, in order, so a turn's final always precedes the next turn's partials, and turns
each result into the service's wire messages (`turn_update`, `formatted`).

Latency, measured in BENCHMARKS.md, comes from three places, and each is worked on:

- The first words: a first partial once `first_partial_ms` of speech is heard, then one
  every `partial_interval_ms` of audio, never while another partial of the session is
  waiting, and never faster than the pool can afford (`PartialSchedule`); finals always
  run. A decoder that streams (`transcribe_partial`) goes on where the last partial left
  off; one that does not decodes at most the last `partial_window_ms` of the turn for a
  partial, and the words before that window are kept from the partials before
  (`merge_window`), so a partial costs the same however long the turn.
- The final: a short pause (`Paused`) starts the final's decode speculatively (the
  postroll not yet heard taken as silence), so it is ready when the silence confirms the
  end; if speech resumes first, that decode is thrown away, never published.
- The end of a turn is decided from silence and text: a final that ends a sentence
  closes the turn after `min_turn_silence_ms`, one that does not waits for
  `max_turn_silence_ms`.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..audio.pcm import PcmConverter, Rechunker
from ..protocol.messages import SessionParams, TurnUpdate, WireWord
from . import metrics
from .decoding import DecodePool
from .endpointing import (
    ONSET_WINDOW,
    EndpointSettings,
    MayEnd,
    MustEnd,
    Paused,
    Resumed,
    TurnDetector,
    TurnStarted,
    frames_of,
)
from .recognizer import SAMPLE_RATE, Transcription
from .streaming import Emit
from .voice import FRAME_MS, FRAME_SAMPLES, VoiceDetector
from .wordtimes import estimate_word_times

FRAME_BYTES = FRAME_SAMPLES * 2
MIN_SPEECH_FRAMES = 6  # under 180 ms of speech is a cough or a click, not a turn
SENTENCE_END = (".", "?", "!")


@dataclass(frozen=True)
class RecognitionSettings:
    """How the embedded server finds turns and paces partials; the one owner of its defaults."""

    min_turn_silence_ms: int = 400  # the service's defaults, when the client sets none
    max_turn_silence_ms: int = 800  # shorter than the service's 1280: our "sounds complete" test is weaker
    first_partial_ms: int = 300  # speech heard before the first partial
    partial_interval_ms: int = 400
    partial_window_ms: int = 1000  # a partial of a decoder that does not stream decodes at most this
    partial_cpu_share: float = 0.35  # at most this share of a worker's time on one session's partials
    max_pending_finals: int = 1  # beyond, reading audio waits: pushes back on a client sending too fast


@dataclass(frozen=True)
class Job:
    kind: str  # "partial", "candidate" (a pause's decode, shown as a partial), "final"
    turn: int  # which turn (counting TurnStarted) it belongs to
    start_frame: int
    end_frame: int
    audio: np.ndarray | None  # copied when the job is made (the session's buffer moves on); None when decoded
    flags: list[bool]  # the voice detector's verdict per frame, for estimating word times
    transcription: Transcription | None = None  # already decoded
    window: bool = False  # a partial of the turn's last stretch only, not from its start
    made_at: float = field(default_factory=time.monotonic)  # when the audio it needs was all here


class TurnAudio:
    """The session's 16 kHz audio from frame `base` on: what a turn's decode can reach."""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self.base = 0

    def append(self, frame: bytes) -> None:
        self.pcm += frame

    def trim(self, frame: int) -> None:
        """Forget the audio before `frame`."""
        if frame > self.base:
            del self.pcm[: (frame - self.base) * FRAME_BYTES]
            self.base = frame

    def samples(self, start: int, end: int) -> np.ndarray:
        begin = (max(start, self.base) - self.base) * FRAME_BYTES
        return np.frombuffer(self.pcm[begin : (end - self.base) * FRAME_BYTES], dtype="<i2")  # a copy


class PartialSchedule:
    """When the next partial may be decoded: every `partial_interval_ms` of a turn's audio,
    one at a time, and within the CPU budget: after `extra` s of decoding that the final
    will not reuse, rest extra/share s (a streaming decoder adds none)."""

    def __init__(self, settings: RecognitionSettings, pool: DecodePool):
        self.every = settings.partial_interval_ms // FRAME_MS
        # The detector says a turn started after ONSET_WINDOW frames of it at most.
        self.first = max(1, frames_of(settings.first_partial_ms) - ONSET_WINDOW)
        self.share = settings.partial_cpu_share
        self.pool = pool
        self.next_frame = 0
        self.waiting = False  # a partial job is queued or decoding
        self.ready_at = 0.0  # wall clock: the CPU budget allows the next partial then
        self.held = -1  # the due frame of the last partial held back

    def turn_started(self, now: int) -> None:
        self.next_frame = now + self.first

    def due(self, frame: int, pending_finals: int) -> bool:
        """Whether to decode a partial at `frame`; if so, it is counted as waiting."""
        due = (
            frame >= self.next_frame
            and not self.waiting
            and pending_finals == 0
            and self.pool.busy < self.pool.workers  # under load, finals first: partials wait
            and time.monotonic() >= self.ready_at
        )
        if due:
            self.waiting = True
            self.next_frame = frame + self.every
        elif frame >= self.next_frame and not self.waiting and self.held != self.next_frame:
            self.held = self.next_frame  # counted once per partial held back
            metrics.PARTIALS_HELD.inc()
        return due

    def decoded(self, extra_seconds: float) -> None:
        self.ready_at = time.monotonic() + extra_seconds / self.share


class Speculation:
    """The final's decode, started at a pause (`Paused`) before the silence confirms that
    the turn ended: used if it ends there, thrown away, never published, if speech resumes."""

    def __init__(self, pool: DecodePool):
        self.pool = pool
        self.pending: tuple[int, asyncio.Future] | None = None  # (the turn's end frame, its decode)
        self.dropped = 0

    def start(self, end_frame: int, heard: np.ndarray, frames: int) -> None:
        """Decode `heard` as the turn's first `frames`, the rest taken as silence."""
        audio = np.concatenate([heard, np.zeros(frames * FRAME_SAMPLES - len(heard), dtype="<i2")])
        self.pending = (end_frame, asyncio.ensure_future(self.pool.transcribe(audio)))

    def keep(self, end_frame: int, transcription: Transcription) -> None:
        """A decode made otherwise, for a later decision on the same end to reuse."""
        future = asyncio.get_running_loop().create_future()
        future.set_result((transcription, 0.0))
        self.pending = (end_frame, future)

    def drop(self) -> None:
        """Speech resumed: the decode is wrong now."""
        if self.pending is not None:
            self.pending[1].cancel()
            self.pending = None
            self.dropped += 1

    async def result(self, end_frame: int) -> Transcription | None:
        """The decode of the turn ending at `end_frame`, if one was started."""
        if self.pending is None or self.pending[0] != end_frame:
            return None
        transcription, _ = await self.pending[1]
        return transcription


_FORCE_END = object()


class RecognizerTranscriber:
    def __init__(self, params: SessionParams, emit: Emit, pool: DecodePool, settings: RecognitionSettings):
        self.emit = emit
        self.pool = pool
        self.punctuates = pool.recognizer.punctuates
        self.settings = settings
        self.format_turns = params.format_turns
        self.detector = TurnDetector(EndpointSettings(
            min_turn_silence_ms=_given(params.min_turn_silence, settings.min_turn_silence_ms),
            max_turn_silence_ms=_given(params.max_turn_silence, settings.max_turn_silence_ms),
        ))
        self.vad = VoiceDetector()
        self.converter = PcmConverter(params.sample_rate, SAMPLE_RATE)
        self.frames = Rechunker(FRAME_BYTES)
        self.audio = TurnAudio()
        self.partials = PartialSchedule(settings, pool)
        self.window_frames = frames_of(settings.partial_window_ms)
        self.speculation = Speculation(pool)
        self.shown: tuple[int, tuple[WireWord, ...]] = (0, ())  # (turn, the words its last partial showed)
        self.turn = 0  # TurnStarted count: the id of the turn in progress (or the last one)
        self.turn_order = 0  # of the next final to emit
        self.pending_finals = 0
        self.finals_drained = asyncio.Event()
        self.finals_drained.set()
        # Bounded: a client sending faster than decoding goes waits in accept().
        self.inbox: asyncio.Queue = asyncio.Queue(maxsize=34)  # about a second of frames
        self.lane: asyncio.Queue = asyncio.Queue()
        self.analyser = asyncio.create_task(self._analyse())
        self.worker = asyncio.create_task(self._work())

    # ------------------------------------------------------------ the server's calls

    async def accept(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2")
        for frame in self.frames.feed(self.converter.convert(samples)):
            await self._put(frame)

    async def force_endpoint(self) -> None:
        await self._put(_FORCE_END)

    async def update(self, settings: dict) -> None:
        await self._put(settings)

    async def finish(self) -> None:
        tail = self.frames.flush(pad=True)
        if tail:
            await self._put(tail)
        await self._put(_FORCE_END)
        await self._put(None)
        await self.analyser
        self.lane.put_nowait(None)
        await self.worker

    async def _put(self, item) -> None:
        await put_watched(self.inbox, (self.analyser, self.worker), item)

    async def close(self) -> None:
        for task in (self.analyser, self.worker):
            task.cancel()
        await asyncio.gather(self.analyser, self.worker, return_exceptions=True)

    # ------------------------------------------------------------ the analyser

    async def _analyse(self) -> None:
        while (item := await self.inbox.get()) is not None:
            if item is _FORCE_END:
                await self._decide(self.detector.force_end())
            elif isinstance(item, dict):
                self._configure(item)
            else:
                await self._frame(item)
            while self.pending_finals > self.settings.max_pending_finals:
                self.finals_drained.clear()
                await self.finals_drained.wait()

    def _configure(self, settings: dict) -> None:
        names = (("min_turn_silence", "min_turn_silence_ms"), ("max_turn_silence", "max_turn_silence_ms"))
        changes = {name: int(settings[key]) for key, name in names if key in settings}
        if "format_turns" in settings:
            self.format_turns = bool(settings["format_turns"])
        if changes:
            self.detector.settings = replace(self.detector.settings, **changes)

    async def _frame(self, frame: bytes) -> None:
        self.audio.append(frame)
        detector = self.detector
        await self._decide(detector.feed(self.vad.is_speech(frame)))
        now = detector.frame
        if not detector.in_turn:
            # Between turns keep only what a new turn's preroll could reach back to.
            self.audio.trim(now - frames_of(detector.settings.preroll_ms) - ONSET_WINDOW)
        elif not detector.paused_sent and sum(detector.speech_flags) >= MIN_SPEECH_FRAMES \
                and self.partials.due(now, self.pending_finals):  # in a pause the words stay as they are
            start = detector.start_frame
            if self.pool.streams is False and now - start > self.window_frames:
                start = now - self.window_frames  # the same cost however long the turn
            self.lane.put_nowait(replace(self._job("partial", start, now), window=start > detector.start_frame))

    async def _decide(self, decisions) -> None:
        for decision in decisions:
            if isinstance(decision, TurnStarted):
                self.turn += 1
                self.partials.turn_started(self.detector.frame)
                self.audio.trim(decision.start_frame)
            elif isinstance(decision, Paused):
                self._speculate(decision)
            elif isinstance(decision, Resumed):
                self.speculation.drop()
            elif isinstance(decision, MayEnd):
                await self._may_end(decision.end_frame)
            elif isinstance(decision, MustEnd):
                self._final(decision.end_frame, await self.speculation.result(decision.end_frame))

    async def _may_end(self, end_frame: int) -> None:
        """A short pause: end the turn here if its text sounds complete, else show what
        was decoded as a partial and wait for the long pause."""
        detector = self.detector
        if not self.punctuates:
            detector.close_turn(end_frame)  # without punctuation it cannot judge: end here
            self._final(end_frame)
            return
        transcription = await self.speculation.result(end_frame)
        if transcription is None:
            transcription, _ = await self.pool.transcribe(self.audio.samples(detector.start_frame, end_frame))
            self.speculation.keep(end_frame, transcription)  # the long pause reuses it
        if transcription.text.rstrip().endswith(SENTENCE_END):
            detector.close_turn(end_frame)
            self._final(end_frame, transcription)
        elif transcription.text:
            # Shown as a partial.
            self.lane.put_nowait(self._job("candidate", detector.start_frame, end_frame, transcription))

    def _speculate(self, pause: Paused) -> None:
        """Start decoding the turn as it would end if the silence goes on: its final, the
        postroll not yet heard taken as silence (digital silence decodes as the room's
        does). Only for a recognizer that judges turn ends by their text (the others end
        the turn at the short pause anyway) and does not stream (a streaming final is cheap)."""
        if self.punctuates and self.pool.streams is False:
            heard = self.audio.samples(self.detector.start_frame, pause.heard_frame)
            self.speculation.start(pause.end_frame, heard, pause.end_frame - self.detector.start_frame)

    def _final(self, end_frame: int, transcription: Transcription | None = None) -> None:
        self.pending_finals += 1
        self.lane.put_nowait(self._job("final", self.detector.start_frame, end_frame, transcription))

    def _job(self, kind: str, start_frame: int, end_frame: int, transcription: Transcription | None = None) -> Job:
        """A job for the lane; its audio is copied only when it still has to be decoded."""
        flags = self.detector.speech_flags[: end_frame - start_frame]
        audio = self.audio.samples(start_frame, end_frame) if transcription is None else None
        return Job(kind, self.turn, start_frame, end_frame, audio, flags, transcription)

    # ------------------------------------------------------------ the lane

    async def _work(self) -> None:
        while (job := await self.lane.get()) is not None:
            if job.kind == "final":
                await self._run_final(job)
            elif self._still_open(job.turn):
                await self._run_partial(job)
            elif job.kind == "partial":
                self.partials.waiting = False  # moot: its turn is already final

    async def _run_partial(self, job: Job) -> None:
        transcription = job.transcription
        try:
            if transcription is None:
                transcription, extra = await self.pool.transcribe(job.audio, partial=True)
                self.partials.decoded(extra)
        finally:
            if job.kind == "partial":
                self.partials.waiting = False
        if transcription.text and self._still_open(job.turn):
            update = turn_update(transcription, job, self.turn_order, final=False)
            if job.window:
                update = merge_window(self.shown[1] if self.shown[0] == job.turn else (), update, job.start_frame * FRAME_MS)
            self.shown = (job.turn, update.words)
            self.emit(update)

    def _still_open(self, turn: int) -> bool:
        return turn == self.turn and self.detector.in_turn

    async def _run_final(self, job: Job) -> None:
        try:
            transcription = job.transcription
            if sum(job.flags) < MIN_SPEECH_FRAMES:
                transcription = None  # a cough or a click, whatever a decode made of it
            elif transcription is None:
                transcription, _ = await self.pool.transcribe(job.audio)
            if transcription is not None and transcription.text:
                final = turn_update(transcription, job, self.turn_order, final=True)
                self.emit(final)
                metrics.FINALS.inc()
                metrics.FINAL_DELAY.observe(time.monotonic() - job.made_at)
                if self.format_turns:
                    self.emit(formatted(final, transcription, self.punctuates))
                self.turn_order += 1
        finally:
            self.pending_finals -= 1
            if self.pending_finals <= self.settings.max_pending_finals:
                self.finals_drained.set()


SEAM_MS = 150  # a window decode's first words may be cut: the previous partial's are kept there


def merge_window(shown: tuple[WireWord, ...], update: TurnUpdate, window_start_ms: int) -> TurnUpdate:
    """A partial of the turn's last stretch, with the words before it kept from the
    partial before: the earlier words, decoded with more context, up to a seam just into
    the window; the window's words from there."""
    seam = window_start_ms + SEAM_MS
    kept = [word for word in shown if (word.start + word.end) / 2 < seam]
    fresh = [word for word in update.words if (word.start + word.end) / 2 >= seam]
    words = tuple(replace(word, is_final=True) for word in kept) + tuple(fresh)
    settled = words[:-1]
    return replace(update, words=words, transcript=" ".join(word.text for word in settled))


async def put_watched(queue: asyncio.Queue, readers: tuple[asyncio.Task, ...], item) -> None:
    """Put `item` in `queue`; if a task that reads it has failed, raise its error rather
    than wait for ever on a queue nobody reads (the server then closes the session 1011)."""
    if not queue.full():
        queue.put_nowait(item)
        return
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({put, *readers}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()
        for task in readers:
            if task.done():
                task.result()  # raises what stopped it
        raise RuntimeError("the transcriber stopped")


def _given(value: int | None, default: int) -> int:
    return value if value is not None else default


# ---------------------------------------------------------------- wire messages


def turn_update(transcription: Transcription, job: Job, turn_order: int, *, final: bool) -> TurnUpdate:
    """A decode as the service says it: lower-case unpunctuated words with times on the
    session clock; in a partial the last word is not yet final."""
    offset_ms = job.start_frame * FRAME_MS
    words = transcription.words
    if words is None:
        words = estimate_word_times(transcription.text, job.flags)
    wire = []
    for index, word in enumerate(words):
        text = plain(word.text)
        if text:
            wire.append(WireWord(
                text=text,
                start=offset_ms + round(word.start * 1000),
                end=offset_ms + round(word.end * 1000),
                confidence=word.confidence,
                is_final=final or index < len(words) - 1,
            ))
    settled = wire if final else wire[:-1]
    return TurnUpdate(
        turn_order=turn_order,
        transcript=" ".join(word.text for word in settled),
        words=tuple(wire),
        end_of_turn=final,
        end_of_turn_confidence=0.9 if final else 0.1,
    )


def formatted(final: TurnUpdate, transcription: Transcription, punctuates: bool) -> TurnUpdate:
    """The formatted twin of a final (format_turns): the recognizer's own punctuation, or
    a sentence made of the words when it writes none."""
    text = transcription.text.strip() if punctuates else sentence(transcription.text)
    tokens = text.split()
    words = final.words
    if len(tokens) == len(words):
        words = tuple(replace(word, text=token) for word, token in zip(words, tokens))
    return replace(final, transcript=text, words=words, is_formatted=True)


def plain(text: str) -> str:
    """A word as the service sends it unformatted: lower case, no punctuation."""
    return re.sub(r"[^\w']", "", text.lower()).strip("'")


def sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(SENTENCE_END) else ".") if text else text
