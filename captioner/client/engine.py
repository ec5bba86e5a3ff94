"""The data flow in one place: source -> session -> events -> hooks.

The engine opens a streaming session, feeds it the source's audio, turns what comes
back into typed events (through `TurnAssembler`), and hands them to the plugins through
the dispatcher. It never waits on a plugin: emitting an event only queues it.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pluggy

from ..audio.pcm import AudioSource
from ..plugins.dispatch import EventBus, PluginDispatcher
from ..errors import AudioError, CaptionerError, NoTermination
from ..events import AudioLevel, CaptionError, Session, SessionSummary
from ..plugins.manager import trace_enabled
from .pump import AudioPump
from .reconnect import Backoff, retryable
from ..protocol.messages import (
    Begin,
    Ignored,
    ServerErrorMessage,
    ServerWarning,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
)
from .session import MalformedFrame, Received, StreamingSession
from ..settings import Settings
from .turns import TurnAssembler

# A long meeting with a flaky server must not grow memory: keep this many errors in the
# summary (and every fatal one), and count the rest.
MAX_KEPT_ERRORS = 100
# Survived problems reported once, then counted: what a misbehaving server repeats.
REPEATABLE_KINDS = frozenset({"protocol", "server"})


class Engine:
    def __init__(self, settings: Settings, pm: pluggy.PluginManager, events: EventBus | None = None):
        self.settings = settings
        self.pm = pm
        self.events = events or EventBus()
        self._run: _Run | None = None

    async def caption(self, source: AudioSource) -> SessionSummary:
        """Caption `source` to its end. Raises the CaptionerError that ended it, if any,
        after every plugin has had `on_error` and `on_session_end`."""
        self._run = _Run(self.settings, self.pm)
        self.events.attach(self._run.dispatcher, self)
        try:
            return await self._run.caption(source)
        finally:
            self.events.detach()
            self._run = None

    @property
    def current_settings(self) -> Settings:
        """The settings in force: live changes (UpdateConfiguration) included."""
        return self.settings if self._run is None else self._run.settings

    def stop(self) -> None:
        """End early and cleanly: stop sending audio, then wait for the last finals."""
        if self._run is not None:
            self._run.stop()

    def control(self, message) -> bool:
        """Send ForceEndpoint or UpdateConfiguration to the current session, now. A
        settings change also holds for the next session, even when it could not be sent
        (no session connected: a reconnect asks for it)."""
        if self._run is None or self._run.session is None:
            return False
        sent = self._run.session.control(message)  # a message the protocol cannot carry raises
        if isinstance(message, UpdateConfiguration):
            self._run.apply_update(message.params)
        return sent


class _Run:
    """The state of one captioning run, kept off the Engine so an Engine can be reused."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager):
        self.settings = settings
        self.dispatcher = PluginDispatcher(pm, self.report, trace=trace_enabled())
        self.assembler = TurnAssembler(wait_for_formatted=settings.format_turns)
        self.session: StreamingSession | None = None
        self.session_ids: list[str] = []
        self.errors: list[CaptionError] = []  # the first few and every fatal one
        self.error_count = 0
        self.partials = self.finals = 0
        self.termination: Termination | None = None
        self.source_description = ""
        self.pump: AudioPump | None = None
        self.session_offset_ms = 0
        self.session_delivered = False  # the current session delivered a final
        self.audio_seconds_sent = 0.0  # over all sessions, resent audio included
        self.reconnects = 0
        self.repeats: dict[tuple[str, str], list] = {}  # (kind, shape) -> [first report, repeats]

    def stop(self) -> None:
        if self.pump is not None:
            self.pump.stop()  # the sessions send what was read, then Terminate

    def apply_update(self, params: dict) -> None:
        """Live settings also hold for the sessions a reconnect starts."""
        self.settings = self.settings.with_update(params)
        # Formatting switched on: from now on the formatted twin is the final; switched
        # off: no twin will come, so none is waited for.
        self.assembler.wait_for_formatted = self.settings.format_turns

    async def caption(self, source: AudioSource) -> SessionSummary:
        if source.sample_rate != self.settings.sample_rate:
            raise ValueError("the source must deliver audio at the session's sample rate")
        self.source_description = source.description
        attach = getattr(source, "attach", None)
        if attach is not None:
            attach(self.report)  # the source's survived problems (overflows) become on_error
        self.dispatcher.start()
        meter = LevelMeter(source, self.dispatcher) if self.dispatcher.wants("on_audio_level") else None
        self.pump = AudioPump(
            source, max_seconds=self.settings.resend_seconds, on_loss=self.audio_lost,
            on_chunk=meter.feed if meter else None,
        )
        self.pump.start()
        failure: CaptionerError | None = None
        try:
            await self.sessions()
        except CaptionerError as error:
            failure = error
            self.report(CaptionError(kind=error.kind, message=str(error), fatal=True, code=error.code))
        finally:
            await self.pump.close()
            self.summarise_repeats()
            for turn in self.assembler.flush():
                self.deliver(turn)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.plugin_drain_timeout
            await self.dispatcher.settle(self.settings.plugin_drain_timeout)
            summary = self.summary()  # after settling, so plugins' last failures are in it
            self.dispatcher.end(summary)
            await self.dispatcher.close(deadline - loop.time())
        if failure:
            raise failure
        return summary

    async def sessions(self) -> None:
        """One session after another until the audio is done: a dropped connection is
        reconnected, with backoff, and the new session resends the turn in progress.

        Once the audio has ended (its end, Ctrl-C, SIGTERM, --duration) reconnecting is
        only worth it for audio whose finals have not come, and all of it gets one
        --terminate-timeout: a server that drops or ignores Terminate cannot keep a stop
        going for minutes."""
        backoff = Backoff(self.settings.reconnect)
        pump = self.pump
        assert pump is not None
        loop = asyncio.get_running_loop()
        stop_deadline: float | None = None  # set by the first failure after the audio ended
        while True:
            self.session_offset_ms = pump.rewind()
            self.session_delivered = False
            self.session = self.settings.new_session()
            try:
                await self._run_session(stop_deadline)
                if pump.error is not None:
                    raise pump.error  # the audio failed: its finals are in, now say why
                return
            except CaptionerError as error:
                began_before = bool(self.session_ids)
                if not retryable(error, began_before):
                    raise self._naming_missing(error)
                if self.session_delivered:
                    backoff.healthy()
                delay = backoff.next_delay(began_before)
                if delay is None:
                    raise self._naming_missing(error)
                if pump.finished:
                    if pump.unfinished_ms() == 0:
                        return  # every final is in: nothing to reconnect for
                    if stop_deadline is None:
                        stop_deadline = loop.time() + self.settings.timeouts.terminate
                    delay = min(delay, max(0.0, stop_deadline - loop.time()))
                if not began_before:
                    # Not yet connected at all: try again quietly; if it never works,
                    # the one line that says why is the error itself.
                    await asyncio.sleep(delay)
                    continue
                self.reconnects += 1
                # Rewound now, not after the wait: audio dropped while waiting counts as lost.
                resend_from = pump.rewind()
                self.report(
                    CaptionError(
                        kind="connection",
                        message=f"{error}; reconnecting in {delay:.1f} s (attempt {backoff.failures}), "
                        f"then resending {(pump.read_ms - resend_from) / 1000:.1f} s of audio",
                        fatal=False,
                        code=error.code,
                    )
                )
                await asyncio.sleep(delay)
            finally:
                self.audio_seconds_sent += self.session.audio_seconds_sent

    async def _run_session(self, deadline: float | None) -> None:
        assert self.session is not None and self.pump is not None
        run = self.session.run(self.pump.session_chunks(), self.on_message)
        if deadline is None:
            await run
            return
        try:
            await asyncio.wait_for(run, max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            raise NoTermination(
                f"gave up on {self.session.where} after --terminate-timeout "
                f"({self.settings.timeouts.terminate:g} s) of trying to get the last finals"
            ) from None

    def _naming_missing(self, error: CaptionerError) -> CaptionerError:
        """The error that ends the run, saying which stretch of audio may lack its finals."""
        assert self.pump is not None
        unfinished = self.pump.unfinished_ms()
        if not unfinished or isinstance(error, AudioError):
            return error
        start = self.pump.read_ms - unfinished
        return type(error)(
            f"{error} (captions of the audio from {_clock(start)} to {_clock(self.pump.read_ms)} may be missing)",
            error.code,
        )

    def audio_lost(self, seconds: float, total: float) -> None:
        self.report(
            CaptionError(
                kind="audio",
                message=f"the connection has been down too long: {seconds:.1f} s of audio was dropped "
                f"({total:.1f} s in all); captions for it are lost",
                fatal=False,
            )
        )

    def on_message(self, message: Received) -> None:
        if isinstance(message, TurnUpdate):
            for turn in self.assembler.feed(message):
                self.deliver(turn)
        elif isinstance(message, Begin):
            for turn in self.assembler.begin(message.session_id, offset_ms=self.session_offset_ms):
                self.deliver(turn)
            self.session_ids.append(message.session_id)
            assert self.session is not None
            self.dispatcher.emit(
                "on_session_begin",
                session=Session(
                    id=message.session_id,
                    protocol=self.settings.protocol,
                    url=self.session.safe_url,
                    sample_rate=self.settings.sample_rate,
                    started_at=datetime.now(timezone.utc),
                    expires_at=message.expires_at,
                    offset_ms=self.session_offset_ms,
                    source=self.source_description,
                    backend=self.settings.backend,
                ),
            )
        elif isinstance(message, Termination):
            self.termination = message
        elif isinstance(message, ServerErrorMessage):
            self.report(CaptionError(kind="server", message=f"the server reported: {message.message}", fatal=False, code=message.code))
        elif isinstance(message, ServerWarning):
            self.report(CaptionError(kind="server", message=f"the server warned: {message.message}", fatal=False, code=message.code))
        elif isinstance(message, MalformedFrame):
            self.report(CaptionError(kind="protocol", message=f"ignored a malformed message from the server: {message.error}", fatal=False))
        else:
            assert isinstance(message, Ignored)

    def deliver(self, turn) -> None:
        if turn.is_final:
            self.session_delivered = True  # progress: a reconnect after this starts the backoff over
            self.finals += 1
            if turn.end_ms is not None and self.pump is not None:
                self.pump.finalized(turn.end_ms)  # its audio need not be resent any more
            self.dispatcher.emit("on_final", turn=turn)
        else:
            self.partials += 1
            self.dispatcher.emit("on_partial", turn=turn)

    def report(self, error: CaptionError) -> None:
        self.error_count += 1
        if not error.fatal and error.kind in REPEATABLE_KINDS:
            # A server that sends the same bad frame a hundred times is one line, and a
            # count at the end: not a hundred lines.
            key = (error.kind, re.sub(r"\d+", "#", error.message))
            if key in self.repeats:
                self.repeats[key][1] += 1
                return
            self.repeats[key] = [error, 0]
        self._keep(error)
        self.dispatcher.emit("on_error", error=error)

    def _keep(self, error: CaptionError) -> None:
        if error.fatal or len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)

    def summarise_repeats(self) -> None:
        for first, times in self.repeats.values():
            if times:
                summary = replace(first, message=f"{first.message} (and {times} more like it)")
                self._keep(summary)
                self.dispatcher.emit("on_error", error=summary)
        self.repeats.clear()

    def summary(self) -> SessionSummary:
        return SessionSummary(
            session_ids=tuple(self.session_ids),
            audio_seconds_sent=self.audio_seconds_sent,
            reconnects=self.reconnects,
            audio_seconds_lost=round(self.pump.lost_ms / 1000, 3) if self.pump else 0.0,
            partials=self.partials,
            finals=self.finals,
            errors=tuple(self.errors),
            error_count=self.error_count,
            terminated=self.termination is not None,
            server_audio_seconds=self.termination.audio_duration_seconds if self.termination else None,
        )


class LevelMeter:
    """Measures the audio the pump reads, emitting `on_audio_level` about five times a second.

    Made only when a plugin takes the event: measuring costs a float conversion per chunk
    (a tenth of the client's CPU in the benchmark)."""

    EVERY_MS = 200

    def __init__(self, source: AudioSource, dispatcher: PluginDispatcher):
        self.source = source  # asked whether it is paused
        self.dispatcher = dispatcher
        self.every = max(1, self.EVERY_MS // source.chunk_ms)
        self._start()

    def _start(self) -> None:
        self.squares = self.peak = 0.0
        self.samples = self.count = 0

    def feed(self, chunk: bytes, end_ms: int) -> None:
        """One chunk read, ending at `end_ms` on the meeting clock."""
        audio = np.frombuffer(chunk, dtype="<i2").astype(np.float32)
        self.squares += float(np.dot(audio, audio))
        self.peak = max(self.peak, float(np.abs(audio).max(initial=0)))
        self.samples += len(audio)
        self.count += 1
        if self.count == self.every:
            self.dispatcher.emit(
                "on_audio_level",
                level=AudioLevel(
                    at_ms=end_ms,
                    rms_dbfs=_dbfs((self.squares / self.samples) ** 0.5),
                    peak_dbfs=_dbfs(self.peak),
                    paused=bool(getattr(self.source, "paused", False)),
                ),
            )
            self._start()


def _clock(ms: float) -> str:
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"


def _dbfs(amplitude: float) -> float:
    return round(20 * math.log10(amplitude / 32768), 1) if amplitude > 0 else -120.0
