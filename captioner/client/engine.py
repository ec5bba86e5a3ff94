"""The data flow of a meeting in one place: source -> session -> events -> dispatch -> plugins.

`Engine.caption(source)` runs a meeting: an `AudioChannel` streams the source through
one session at a time and turns what comes back into partials and finals; the meeting
counts them (`MeetingTally`) and hands every event to the plugins through the
dispatcher. It never waits on a plugin: emitting an event only queues it.
"""

from __future__ import annotations

import pluggy

from ..audio.pcm import AudioSource
from ..errors import CaptionerError
from ..events import AudioLevel, CaptionError, MeetingSummary, Session, Turn
from ..plugins.dispatch import PluginDispatcher
from ..plugins.hooks import PluginHooks, trace_enabled
from ..plugins.meeting import Meeting
from ..protocol.messages import ClientMessage, UpdateConfiguration
from .channel import AudioChannel
from .settings import Settings
from .tally import MeetingTally


class Engine:
    """Captions meetings with these settings and plugins; reusable, one meeting at a time."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, meeting: Meeting | None = None):
        self.settings = settings
        self.hooks = PluginHooks(pm)
        self.meeting = meeting or Meeting()  # the plugins' handle on it
        self._run: MeetingRun | None = None

    async def caption(self, source: AudioSource) -> MeetingSummary:
        """Caption `source` to its end. Raises the CaptionerError that ended it, if any,
        after every plugin has had `on_error` and `on_meeting_end`."""
        self._run = MeetingRun(self.settings, self.hooks)
        self.meeting.attach(self._run.dispatcher, self, self.settings.protocol)
        try:
            return await self._run.caption(source)
        finally:
            self.meeting.detach()
            self._run = None

    @property
    def current_settings(self) -> Settings:
        """The settings in force: live changes (UpdateConfiguration) included."""
        return self.settings if self._run is None else self._run.settings

    def stop(self) -> None:
        """End early and cleanly: stop sending audio, then wait for the last finals."""
        if self._run is not None:
            self._run.stop()

    def control(self, message: ClientMessage) -> bool:
        """Send ForceEndpoint or UpdateConfiguration to the current session, now. A
        settings change also holds for the next session, even when it could not be sent
        (no session connected: a reconnect asks for it)."""
        return self._run is not None and self._run.control(message)


class MeetingRun:
    """One meeting: its settings (live changes included), its tally and its dispatcher."""

    def __init__(self, settings: Settings, hooks: PluginHooks):
        self.settings = settings
        self.dispatcher = PluginDispatcher(hooks, self.report, trace=trace_enabled())
        self.tally = MeetingTally(lambda error: self.dispatcher.emit("on_error", error=error))
        self.channels: list[AudioChannel] = []

    async def caption(self, source: AudioSource) -> MeetingSummary:
        if source.sample_rate != self.settings.sample_rate:
            raise ValueError("the source must deliver audio at the session's sample rate")
        attach = getattr(source, "attach", None)
        if attach is not None:
            attach(self.report)  # the source's survived problems (overflows) become on_error
        self.dispatcher.start()
        channel = AudioChannel(source, self)
        self.channels.append(channel)
        failure: CaptionerError | None = None
        try:
            await channel.caption()
        except CaptionerError as error:
            failure = error
            self.report(CaptionError(kind=error.kind, message=str(error), fatal=True, code=error.code))
        finally:
            self.tally.audio_seconds_lost = sum(c.pump.lost_ms for c in self.channels) / 1000
            self.tally.summarise_repeats()
            await self.dispatcher.finish(self.tally.summary, self.settings.plugin_drain_timeout)
        if failure:
            raise failure
        return self.tally.summary()

    def stop(self) -> None:
        for channel in self.channels:
            channel.stop()

    def control(self, message: ClientMessage) -> bool:
        if isinstance(message, UpdateConfiguration):
            # Live settings also hold for the sessions a reconnect starts.
            self.settings = self.settings.with_update(message.params)
        sent = [channel.control(message) for channel in self.channels]
        return any(sent)

    # ------------------------------------------------------------ events

    def session_began(self, session: Session) -> None:
        self.tally.session_ids.append(session.id)
        self.dispatcher.emit("on_session_begin", session=session)

    def deliver(self, turn: Turn) -> None:
        if turn.is_final:
            self.tally.finals += 1
            self.dispatcher.emit("on_final", turn=turn)
        else:
            self.tally.partials += 1
            self.dispatcher.emit("on_partial", turn=turn)

    def audio_level(self, level: AudioLevel) -> None:
        self.dispatcher.emit("on_audio_level", level=level)

    def report(self, error: CaptionError) -> None:
        self.tally.report(error)
