"""The embedded recognizer server: `captioner serve`, and the default with no API key.

A `StreamingServer` (captioner.server) whose sessions are `RecognizerTranscriber`s:
each cuts its audio into turns with a voice detector (PocketSphinx's, 0.003 ms per
30 ms frame, cheap enough for the event loop) and `TurnDetector`, and sends finished
stretches of audio to a shared `DecodePool` of worker threads, each holding its own
decoder. So decoding never blocks the event loop or other sessions, and the model is
loaded once per worker, not once per session.

Per session, decodes run one at a time, in order, so a turn's final always precedes
the next turn's partials. Partials decode the turn in progress at most once per
`partial_interval` of audio, never while another partial of the session is waiting,
and never faster than the pool can afford (see `_partial_allowed`); finals always run.
A decoder that streams (`transcribe_partial`) goes on where the last partial left off.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
import threading

import numpy as np

from ..audio.pcm import PcmConverter, Rechunker
from ..protocol.messages import SessionParams, TurnUpdate, WireWord
from .recognizer import SAMPLE_RATE, Recognizer, Transcription
from .endpointing import (
    FRAME_MS,
    ONSET_WINDOW,
    EndpointSettings,
    MayEnd,
    MustEnd,
    TurnDetector,
    TurnStarted,
    frames_of,
)
from .voice import VoiceDetector
from .wordtimes import estimate_word_times
from .streaming import Emit, ServerLimits, StreamingServer

FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2
MIN_SPEECH_FRAMES = 6  # under 180 ms of speech is a cough or a click, not a turn
SENTENCE_END = (".", "?", "!")


@dataclass(frozen=True)
class RecognitionSettings:
    min_turn_silence_ms: int = 400  # the service's defaults, when the client sets none
    max_turn_silence_ms: int = 800  # shorter than the service's 1280: our "sounds complete" test is weaker
    partial_interval_ms: int = 1000
    partial_cpu_share: float = 0.35  # at most this share of a worker's time on one session's partials
    max_pending_finals: int = 1  # beyond, reading audio waits: pushes back on a client sending too fast


def default_decode_workers() -> int:
    """Decoding threads when --decode-workers is not given: two, or one on one core. A
    recognizer that sizes itself to the pool (faster-whisper's replicas) asks here too."""
    return min(2, os.cpu_count() or 1)


class DecodePool:
    """Worker threads shared by all sessions, each with its own decoder (made on first use)."""

    def __init__(self, recognizer: Recognizer, workers: int | None = None):
        self.recognizer = recognizer
        self.workers = workers or default_decode_workers()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="captioner-decode")
        self._local = threading.local()
        self.busy = 0  # decodes queued or running

    def _decode(self, audio: np.ndarray, partial: bool) -> tuple[Transcription, float]:
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = self.recognizer.new_decoder()
        streams = partial and hasattr(decoder, "transcribe_partial")
        started = time.perf_counter()
        transcription = decoder.transcribe_partial(audio) if streams else decoder.transcribe(audio)
        return transcription, 0.0 if streams else time.perf_counter() - started

    async def transcribe(self, audio: np.ndarray, partial: bool = False) -> tuple[Transcription, float]:
        """The transcription, and the seconds of decoding it added: a partial's audio is the
        turn so far, which a decoder that starts over decodes again (all of the time spent
        is extra), while a streaming one goes on where it left off, doing work the final
        would have had to do anyway (none is)."""
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._decode, audio, partial)
        finally:
            self.busy -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class _Job:
    kind: str  # "partial", "candidate" (a pause's decode, shown as a partial), "final"
    turn: int  # which turn (counting TurnStarted) it belongs to
    start_frame: int
    end_frame: int
    audio: np.ndarray  # copied when the job is made: the session's buffer moves on
    flags: list[bool]  # the voice detector's verdict per frame, for estimating word times
    transcription: Transcription | None = None  # already decoded


_FORCE_END = object()


class RecognizerTranscriber:
    """One session: audio in, turn updates out through `emit`.

    Two tasks per session. The analyser reads 30 ms frames in order and decides where
    turns start and end; when a pause may end a turn, it waits for that decode before
    reading on, so turn boundaries come out the same at any replay speed. The lane
    runs partial and final decodes one at a time and emits their results in order.
    """

    def __init__(self, params: SessionParams, emit: Emit, pool: DecodePool, settings: RecognitionSettings):
        self.emit = emit
        self.pool = pool
        self.recognizer = pool.recognizer
        self.settings = settings
        self.format_turns = params.format_turns
        self.detector = TurnDetector(
            EndpointSettings(
                min_turn_silence_ms=params.min_turn_silence if params.min_turn_silence is not None else settings.min_turn_silence_ms,
                max_turn_silence_ms=params.max_turn_silence if params.max_turn_silence is not None else settings.max_turn_silence_ms,
            )
        )
        self.vad = VoiceDetector()
        self.converter = PcmConverter(params.sample_rate, SAMPLE_RATE)
        self.frames = Rechunker(FRAME_BYTES)
        self.audio = bytearray()  # 16 kHz PCM from frame `audio_base` on
        self.audio_base = 0
        self.turn = 0  # TurnStarted count: the id of the turn in progress (or the last one)
        self.turn_order = 0  # of the next final to emit
        self.next_partial_frame = 0
        self.partial_waiting = False
        self.partial_ready_at = 0.0  # wall clock: the CPU budget allows the next partial then
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
            await self.inbox.put(frame)

    async def force_endpoint(self) -> None:
        await self.inbox.put(_FORCE_END)

    async def update(self, settings: dict) -> None:
        await self.inbox.put(settings)

    async def finish(self) -> None:
        tail = self.frames.flush(pad=True)
        if tail:
            await self.inbox.put(tail)
        await self.inbox.put(_FORCE_END)
        await self.inbox.put(None)
        await self.analyser
        self.lane.put_nowait(None)
        await self.worker

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
        changes = {}
        for key, field_name in (("min_turn_silence", "min_turn_silence_ms"), ("max_turn_silence", "max_turn_silence_ms")):
            if key in settings:
                changes[field_name] = int(settings[key])
        if "format_turns" in settings:
            self.format_turns = bool(settings["format_turns"])
        if changes:
            self.detector.settings = replace(self.detector.settings, **changes)

    async def _frame(self, frame: bytes) -> None:
        self.audio += frame
        detector = self.detector
        await self._decide(detector.feed(self.vad.is_speech(frame)))
        now = detector.frame
        if detector.in_turn:
            if now >= self.next_partial_frame and self._partial_allowed():
                self.partial_waiting = True
                self.next_partial_frame = now + self.settings.partial_interval_ms // FRAME_MS
                self.lane.put_nowait(self._job("partial", detector.start_frame, now))
        else:
            # Between turns keep only what a new turn's preroll could reach back to.
            self._trim(now - frames_of(detector.settings.preroll_ms) - ONSET_WINDOW)

    def _partial_allowed(self) -> bool:
        return (
            not self.partial_waiting
            and self.pending_finals == 0
            and self.pool.busy < self.pool.workers  # under load, finals first: partials wait
            and time.monotonic() >= self.partial_ready_at
        )

    async def _decide(self, decisions) -> None:
        detector = self.detector
        for decision in decisions:
            if isinstance(decision, TurnStarted):
                self.turn += 1
                self.next_partial_frame = decision.start_frame + self.settings.partial_interval_ms // FRAME_MS
                self._trim(decision.start_frame)
            elif isinstance(decision, MayEnd):
                if not self.recognizer.punctuates:
                    detector.close_turn(decision.end_frame)  # without punctuation it cannot judge: end here
                    self._final(decision.end_frame)
                    continue
                job = self._job("candidate", detector.start_frame, decision.end_frame)
                transcription, _ = await self.pool.transcribe(job.audio)
                if transcription.text.rstrip().endswith(SENTENCE_END):
                    # It sounds complete: end the turn here rather than at max_turn_silence.
                    detector.close_turn(decision.end_frame)
                    self._final(decision.end_frame, transcription)
                elif transcription.text:
                    self.lane.put_nowait(replace(job, transcription=transcription))  # shown as a partial
            elif isinstance(decision, MustEnd):
                self._final(decision.end_frame)

    def _final(self, end_frame: int, transcription: Transcription | None = None) -> None:
        self.pending_finals += 1
        self.lane.put_nowait(replace(self._job("final", self.detector.start_frame, end_frame), transcription=transcription))

    def _job(self, kind: str, start_frame: int, end_frame: int) -> _Job:
        flags = self.detector.speech_flags[: end_frame - start_frame]
        return _Job(kind, self.turn, start_frame, end_frame, self._samples(start_frame, end_frame), flags)

    def _trim(self, frame: int) -> None:
        if frame > self.audio_base:
            del self.audio[: (frame - self.audio_base) * FRAME_BYTES]
            self.audio_base = frame

    def _samples(self, start: int, end: int) -> np.ndarray:
        begin = (max(start, self.audio_base) - self.audio_base) * FRAME_BYTES
        return np.frombuffer(self.audio[begin : (end - self.audio_base) * FRAME_BYTES], dtype="<i2")  # a copy

    # ------------------------------------------------------------ the lane

    async def _work(self) -> None:
        while (job := await self.lane.get()) is not None:
            if job.kind == "final":
                await self._run_final(job)
            elif self._still_open(job.turn):
                await self._run_partial(job)
            elif job.kind == "partial":
                self.partial_waiting = False  # moot: its turn is already final

    async def _run_partial(self, job: _Job) -> None:
        transcription = job.transcription
        try:
            if transcription is None:
                transcription, extra = await self.pool.transcribe(job.audio, partial=True)
                # Bound the CPU partials add: after `extra` s of decoding the final will
                # not reuse, rest extra/share s. A streaming decoder adds none.
                self.partial_ready_at = time.monotonic() + extra / self.settings.partial_cpu_share
        finally:
            if job.kind == "partial":
                self.partial_waiting = False
        if transcription.text and self._still_open(job.turn):
            self.emit(self._update(transcription, job, final=False))

    def _still_open(self, turn: int) -> bool:
        return turn == self.turn and self.detector.in_turn

    async def _run_final(self, job: _Job) -> None:
        try:
            transcription = job.transcription
            if transcription is None and sum(job.flags) >= MIN_SPEECH_FRAMES:
                transcription, _ = await self.pool.transcribe(job.audio)
            if transcription is not None and transcription.text:
                final = self._update(transcription, job, final=True)
                self.emit(final)
                if self.format_turns:
                    self.emit(self._formatted(final, transcription))
                self.turn_order += 1
        finally:
            self.pending_finals -= 1
            if self.pending_finals <= self.settings.max_pending_finals:
                self.finals_drained.set()

    # ------------------------------------------------------------ messages

    def _update(self, transcription: Transcription, job: _Job, final: bool) -> TurnUpdate:
        offset_ms = job.start_frame * FRAME_MS
        words = transcription.words
        if words is None:
            words = estimate_word_times(transcription.text, job.flags)
        wire = []
        for index, word in enumerate(words):
            text = plain(word.text)
            if not text:
                continue
            wire.append(
                WireWord(
                    text=text,
                    start=offset_ms + round(word.start * 1000),
                    end=offset_ms + round(word.end * 1000),
                    confidence=word.confidence,
                    is_final=final or index < len(words) - 1,
                )
            )
        settled = wire if final else wire[:-1]
        return TurnUpdate(
            turn_order=self.turn_order,
            transcript=" ".join(word.text for word in settled),
            words=tuple(wire),
            end_of_turn=final,
            end_of_turn_confidence=0.9 if final else 0.1,
        )

    def _formatted(self, final: TurnUpdate, transcription: Transcription) -> TurnUpdate:
        text = transcription.text.strip() if self.recognizer.punctuates else sentence(transcription.text)
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


class EmbeddedServer(StreamingServer):
    """The AssemblyAI v3 protocol in front of a local recognizer."""

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        workers: int | None = None,
        settings: RecognitionSettings = RecognitionSettings(),
        # The service's own limits, so a runaway client cannot take the machine: sessions
        # idle 30 s are closed, at most 16 at once, each at most 4 hours (captioner's
        # client reconnects seamlessly when a session reaches it).
        limits: ServerLimits = ServerLimits(idle_timeout=30, max_sessions=16, max_session_seconds=4 * 3600),
    ):
        self.pool = DecodePool(recognizer, workers)
        self.recognition = settings
        super().__init__(
            lambda params, emit: RecognizerTranscriber(params, emit, self.pool, self.recognition),
            host=host,
            port=port,
            api_key=api_key,
            limits=limits,
        )

    async def stop(self) -> None:
        await super().stop()
        self.pool.close()
