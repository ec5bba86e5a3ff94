"""The data flow of a meeting in one place: source -> session -> events -> dispatch -> plugins.

`Engine.caption(sources)` runs a meeting: for each source (the microphone, "mic", and
what the computer plays, "meeting") an `AudioChannel` streams it through one session at
a time and turns what comes back into partials and finals; the meeting puts the finals
of all channels in time order (`TimeOrder`), counts everything (`MeetingTally`) and
hands every event to the plugins through the dispatcher. It never waits on a plugin:
emitting an event only queues it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Mapping

import pluggy

from ..audio.pcm import AudioSource
from ..errors import CaptionerError
from ..events import AudioLevel, CaptionError, MeetingSummary, Session, Turn
from ..plugins.dispatch import PluginDispatcher
from ..plugins.hooks import PluginHooks, trace_enabled
from ..plugins.meeting import Meeting
from ..protocol.messages import ClientMessage, UpdateConfiguration
from .bleed import without_echo, without_repeats
from .channel import AudioChannel
from .order import TimeOrder
from .settings import Settings
from .tally import MeetingTally


class Engine:
    """Captions meetings with these settings and plugins; reusable, one meeting at a time."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, meeting: Meeting | None = None):
        self.settings = settings
        self.hooks = PluginHooks(pm)
        self.meeting = meeting or Meeting()  # the plugins' handle on it
        self._run: MeetingRun | None = None

    async def caption(self, sources: AudioSource | Mapping[str, AudioSource]) -> MeetingSummary:
        """Caption the sources ({"mic": ..., "meeting": ...}, or one source, the "mic") to
        their end. Raises the CaptionerError that ended the meeting, if any, after every
        plugin has had `on_error` and `on_meeting_end`."""
        if not isinstance(sources, Mapping):
            sources = {"mic": sources}
        self._run = MeetingRun(self.settings, self.hooks)
        self.meeting.attach(self._run.dispatcher, self, self.settings.protocol)
        try:
            return await self._run.caption(dict(sources))
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
    """One meeting: its settings (live changes included), its tally, its dispatcher, and
    a channel per source."""

    def __init__(self, settings: Settings, hooks: PluginHooks):
        self.settings = settings
        self.dispatcher = PluginDispatcher(hooks, self.report, trace=trace_enabled())
        self.tally = MeetingTally(lambda error: self.dispatcher.emit("on_error", error=error))
        self.turn_numbers = itertools.count()  # one numbering for the turns of every channel
        self.channels: list[AudioChannel] = []
        self.order = TimeOrder({}, self._deliver_final)
        self.recent_meeting_finals: deque[Turn] = deque(maxlen=20)

    async def caption(self, sources: dict[str, AudioSource]) -> MeetingSummary:
        for source in sources.values():
            if source.sample_rate != self.settings.sample_rate:
                raise ValueError("a source must deliver audio at the session's sample rate")
            attach = getattr(source, "attach", None)
            if attach is not None:
                attach(self.report)  # the source's survived problems (overflows) become on_error
        self.dispatcher.start()
        sources = without_echo(sources)  # on speakers, the mic also hears the meeting
        labels = self.settings.channel_labels if len(sources) > 1 else {}
        self.channels = [AudioChannel(source, self, name, labels.get(name, name)) if labels
                         else AudioChannel(source, self, name) for name, source in sources.items()]
        self.order.channels = {channel.name: channel for channel in self.channels}
        self.tally.channels = set(self.order.channels)
        failure: CaptionerError | None = None
        try:
            await self._caption_channels()
        except CaptionerError as error:
            failure = error
            self.report(CaptionError(kind=error.kind, message=str(error), fatal=True, code=error.code))
        finally:
            self.order.flush()
            self.tally.audio_seconds_lost = sum(c.pump.lost_ms for c in self.channels) / 1000
            self.tally.summarise_repeats()
            await self.dispatcher.finish(self.tally.summary, self.settings.plugin_drain_timeout)
        if failure:
            raise failure
        return self.tally.summary()

    async def _caption_channels(self) -> None:
        """Every channel to its end; when one fails, the others stop (cleanly: their last
        finals still come) and the meeting ends with the failure."""
        tasks = [asyncio.create_task(channel.caption(), name=f"captioner-{channel.name}") for channel in self.channels]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if pending:
                self.stop()
                await asyncio.wait(pending)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # the first failure, in channel order
            if task.exception() is not None:
                raise task.exception()

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
            self.order.final(turn)  # in time order with the other channels' finals
        else:
            self.tally.partials += 1
            self.dispatcher.emit("on_partial", turn=turn)
        self.order.release()

    def _deliver_final(self, turn: Turn) -> None:
        if turn.channel == "meeting":
            self.recent_meeting_finals.append(turn)
        elif len(self.channels) > 1:
            turn = self._echo_removed(turn)
            if turn is None:
                return
        self.tally.finals += 1
        self.dispatcher.emit("on_final", turn=turn)

    def _echo_removed(self, turn: Turn) -> Turn | None:
        """The text backstop against double captions (None: all of it was the meeting's echo)."""
        meeting = [*self.recent_meeting_finals, *(t for t in self.order.held() if t.channel == "meeting")]
        kept = without_repeats(turn, meeting)
        if kept is None:
            self.tally.echo_finals_dropped += 1
        return kept

    def audio_level(self, level: AudioLevel) -> None:
        self.dispatcher.emit("on_audio_level", level=level)

    def report(self, error: CaptionError) -> None:
        self.tally.report(error)
