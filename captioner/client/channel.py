"""One audio source captioned through one streaming session at a time.

The source's audio goes through a pump that keeps it until its finals come; sessions
follow one another (a dropped connection is reconnected with backoff, and the new
session resends the turn in progress); what each session says becomes partials and
finals on the meeting clock (`TurnAssembler`), handed to the meeting to deliver.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..audio.pcm import AudioSource
from ..errors import AudioError, CaptionerError, NoTermination
from ..events import CaptionError, Session, Turn
from ..protocol.messages import (
    Begin,
    ClientMessage,
    Ignored,
    ServerErrorMessage,
    ServerWarning,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
)
from .levels import LevelMeter
from .order import LAG_MS
from .pump import AudioPump
from .reconnect import Backoff, retryable
from .session import MalformedFrame, Received, StreamingSession
from .turns import TurnAssembler

if TYPE_CHECKING:
    from .engine import MeetingRun


class AudioChannel:
    """`name` is "mic" or "meeting"; `label` what people see ("You"), None with one channel."""

    def __init__(self, source: AudioSource, meeting: MeetingRun, name: str = "mic", label: str | None = None):
        self.source = source
        self.meeting = meeting
        self.name = name
        settings = meeting.settings
        self.assembler = TurnAssembler(wait_for_formatted=settings.session.format_turns, channel=name,
                                       channel_label=label, numbers=meeting.turn_numbers)
        meter = LevelMeter(source, meeting.audio_level, name) if meeting.dispatcher.wants("on_audio_level") else None
        self.pump = AudioPump(source, max_seconds=settings.resend_seconds, on_loss=self._audio_lost,
                              on_chunk=meter.feed if meter else None)
        self.session: StreamingSession | None = None
        self.session_offset_ms = 0
        self.session_delivered = False  # the current session delivered a final
        self.began = False  # a session of this channel ever began
        self.open_turn_start: int | None = None  # the start of the turn in progress, from its partials

    async def caption(self) -> None:
        """Caption the source to its end; raise the CaptionerError that ended it, if any,
        after delivering every final that came."""
        self.pump.start()
        try:
            await self._sessions()
        finally:
            await self.pump.close()
            for turn in self.assembler.flush():
                self.deliver(turn)

    def stop(self) -> None:
        self.pump.stop()  # the sessions send what was read, then Terminate

    def earliest_final_start(self) -> float:
        """No final of this channel from now on starts before this, on the meeting clock:
        the turn in progress's start, or else somewhat before the audio sent so far (a
        service reports speech well within LAG_MS of hearing it)."""
        if self.open_turn_start is not None:
            return self.open_turn_start
        sent_ms = self.session_offset_ms
        if self.session is not None:
            sent_ms += self.session.audio_seconds_sent * 1000
        return sent_ms - LAG_MS

    def control(self, message: ClientMessage) -> bool:
        """Send ForceEndpoint or UpdateConfiguration to the current session, now."""
        if isinstance(message, UpdateConfiguration):
            # Formatting switched on: from now on the formatted twin is the final; switched
            # off: no twin will come, so none is waited for.
            self.assembler.wait_for_formatted = self.meeting.settings.session.format_turns
        return self.session is not None and self.session.control(message)

    # ------------------------------------------------------------ sessions

    async def _sessions(self) -> None:
        """One session after another until the audio is done.

        Once the audio has ended (its end, Ctrl-C, SIGTERM, --duration) reconnecting is
        only worth it for audio whose finals have not come, and all of it gets one
        --terminate-timeout: a server that drops or ignores Terminate cannot keep a stop
        going for minutes."""
        backoff = Backoff(self.meeting.settings.reconnect)
        loop = asyncio.get_running_loop()
        stop_deadline: float | None = None  # set by the first failure after the audio ended
        while True:
            self.session_offset_ms = self.pump.rewind()
            self.session_delivered = False
            self.session = self.meeting.settings.new_session()  # live changes included
            try:
                await self._run_session(stop_deadline)
                if self.pump.error is not None:
                    raise self.pump.error  # the audio failed: its finals are in, now say why
                return
            except CaptionerError as error:
                delay = self._retry_delay(error, backoff)
                if self.pump.finished:
                    if self.pump.unfinished_ms() == 0:
                        return  # every final is in: nothing to reconnect for
                    stop_deadline = stop_deadline or loop.time() + self.meeting.settings.timeouts.terminate
                    delay = min(delay, max(0.0, stop_deadline - loop.time()))
                if self.began:
                    self._say_reconnecting(error, delay, backoff.failures)
                # Not yet connected at all: try again quietly; if it never works, the one
                # line that says why is the error itself.
                await asyncio.sleep(delay)
            finally:
                self.meeting.tally.audio_seconds_sent += self.session.audio_seconds_sent

    def _retry_delay(self, error: CaptionerError, backoff: Backoff) -> float:
        """Seconds before the next attempt; raises `error` (naming what may be missing)
        when it is not worth one."""
        if not retryable(error, self.began):
            raise self._naming_missing(error)
        if self.session_delivered:
            backoff.healthy()
        delay = backoff.next_delay(self.began)
        if delay is None:
            raise self._naming_missing(error)
        return delay

    def _say_reconnecting(self, error: CaptionerError, delay: float, attempt: int) -> None:
        self.meeting.tally.reconnects += 1
        # Rewound now, not after the wait: audio dropped while waiting counts as lost.
        resend_from = self.pump.rewind()
        self.meeting.report(CaptionError(
            kind="connection",
            message=f"{error}; reconnecting in {delay:.1f} s (attempt {attempt}), "
            f"then resending {(self.pump.read_ms - resend_from) / 1000:.1f} s of audio",
            fatal=False,
            code=error.code,
        ))

    async def _run_session(self, deadline: float | None) -> None:
        assert self.session is not None
        run = self.session.run(self.pump.session_chunks(), self.on_message)
        if deadline is None:
            await run
            return
        try:
            await asyncio.wait_for(run, max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            raise NoTermination(
                f"gave up on {self.session.where} after --terminate-timeout "
                f"({self.meeting.settings.timeouts.terminate:g} s) of trying to get the last finals"
            ) from None

    def _naming_missing(self, error: CaptionerError) -> CaptionerError:
        """The error that ends the meeting, saying which stretch of audio may lack its finals."""
        unfinished = self.pump.unfinished_ms()
        if not unfinished or isinstance(error, AudioError):
            return error
        start = self.pump.read_ms - unfinished
        return type(error)(
            f"{error} (captions of the audio from {clock(start)} to {clock(self.pump.read_ms)} may be missing)",
            error.code,
        )

    def _audio_lost(self, seconds: float, total: float) -> None:
        self.meeting.report(CaptionError(
            kind="audio",
            message=f"the connection has been down too long: {seconds:.1f} s of audio was dropped "
            f"({total:.1f} s in all); captions for it are lost",
            fatal=False,
        ))

    # ------------------------------------------------------------ what the service says

    def on_message(self, message: Received) -> None:
        report = self.meeting.report
        if isinstance(message, TurnUpdate):
            for turn in self.assembler.feed(message):
                self.deliver(turn)
        elif isinstance(message, Begin):
            self._begin(message)
        elif isinstance(message, Termination):
            self.meeting.tally.termination(self.name, message.audio_duration_seconds)
        elif isinstance(message, ServerErrorMessage):
            report(CaptionError(kind="server", message=f"the server reported: {message.message}", fatal=False,
                                code=message.code))
        elif isinstance(message, ServerWarning):
            report(CaptionError(kind="server", message=f"the server warned: {message.message}", fatal=False,
                                code=message.code))
        elif isinstance(message, MalformedFrame):
            report(CaptionError(kind="protocol", message=f"ignored a malformed message from the server: "
                                f"{message.error}", fatal=False))
        else:
            assert isinstance(message, Ignored)

    def _begin(self, begin: Begin) -> None:
        for turn in self.assembler.begin(begin.session_id, offset_ms=self.session_offset_ms):
            self.deliver(turn)
        self.began = True
        assert self.session is not None
        settings = self.meeting.settings
        self.meeting.session_began(Session(
            id=begin.session_id,
            protocol=settings.protocol,
            url=self.session.safe_url,
            sample_rate=settings.sample_rate,
            started_at=datetime.now(timezone.utc),
            expires_at=begin.expires_at,
            offset_ms=self.session_offset_ms,
            source=self.source.description,
            backend=settings.backend,
            channel=self.name,
        ))

    def deliver(self, turn: Turn) -> None:
        if turn.is_final:
            self.open_turn_start = None
            self.session_delivered = True  # progress: a reconnect after this starts the backoff over
            if turn.end_ms is not None:
                self.pump.finalized(turn.end_ms)  # its audio need not be resent any more
        elif turn.start_ms is not None:
            start = self.open_turn_start
            self.open_turn_start = turn.start_ms if start is None else min(start, turn.start_ms)
        self.meeting.deliver(turn)


def clock(ms: float) -> str:
    """mm:ss.s on the meeting clock."""
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"
