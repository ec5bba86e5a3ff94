"""Meeting audio: what an output device plays (its monitor), beside the microphone.

In a remote meeting the other participants are in what the computer plays. PortAudio
reaches Linux sound through ALSA only and cannot list a sink's monitor, so on Linux this
talks to the sound server's PulseAudio interface (PulseAudio, or PipeWire through
pipewire-pulse), as measured in ../shared/MEETING_AUDIO.md: `pulsectl` lists outputs,
tells which is the default and reports changes; `pasimple` records a monitor, one
blocking read per 50 ms in a thread of its own, handed to the event loop as the
microphone's buffers are (bounded; what the loop cannot take in time is dropped and
counted).

By default the source follows the default output: when headphones are plugged in, or the
default changes, our recording is moved to the new output's monitor. PulseAudio keeps a
recording on the old output, and when the recorded output disappears it silently moves
the recording to the default *input* (the microphone), so a watcher thread checks,
after every change the server reports, that our recording is where it should be, and
moves it back. A named output that disappears ends the meeting audio with one line.

On Windows and macOS a meeting-audio source is a loopback input device named with
`--meeting-audio NAME` (WASAPI loopback, BlackHole), read through PortAudio like a
microphone (see docs/meeting-audio.md; untested here).
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from ..errors import AudioError, UsageError
from ..events import CaptionError
from .live import LiveSource
from .pcm import DEFAULT_CHUNK_MS, DEFAULT_SAMPLE_RATE, chunk_bytes

INSTALL_HINT = "pip install pulsectl pasimple (Debian: the libpulse0 package; PipeWire serves it through pipewire-pulse)"
# A monitor delivers continuously (silence too); an idle PulseAudio null sink may take 2 s
# for its first block.
STALL_SECONDS = 5.0
# pasimple's error numbers (libpulse's), in words a user can act on.
PULSE_ERRORS = {5: "no such output", 6: "the sound server refused the connection",
                11: "the sound server went away", 12: "the sound server ended the recording"}


@dataclass(frozen=True)
class MeetingOutput:
    """An output device whose sound can be captioned: a PulseAudio sink and its monitor."""

    index: int
    name: str
    description: str
    monitor: str
    is_default: bool = False

    def describe(self) -> str:
        mark = ", default" if self.is_default else ""
        return f"{self.index}: {self.description} ({self.name}{mark})"


def _pulsectl():
    try:
        import pulsectl
    except ImportError:
        raise AudioError(f"meeting audio needs pulsectl and pasimple: {INSTALL_HINT}") from None
    return pulsectl


def _connect(name: str):
    """A pulsectl connection to the session's sound server, or one line saying there is none."""
    pulsectl = _pulsectl()
    pulse = pulsectl.Pulse(name, connect=False)
    try:
        pulse.connect(autospawn=False, wait=False, timeout=5)
    except pulsectl.PulseError:
        pulse.close()
        where = os.environ.get("PULSE_SERVER") or "the session's"
        raise AudioError(
            f"meeting audio needs a PulseAudio or PipeWire sound server, and none answers ({where}); "
            "is this a desktop session?"
        ) from None
    return pulse


def list_meeting_outputs() -> list[MeetingOutput]:
    """The outputs whose sound can be captioned, the default one marked."""
    pulse = _connect("captioner-devices")
    try:
        default = pulse.server_info().default_sink_name
        return [MeetingOutput(sink.index, sink.name, sink.description, sink.monitor_source_name, sink.name == default)
                for sink in pulse.sink_list()]
    finally:
        pulse.close()


def choose_output(outputs: list[MeetingOutput], selector: str | None) -> MeetingOutput | None:
    """The output `selector` means: its number, or a unique part of its name or description;
    None for the default output, which is then followed."""
    listed = "; ".join(output.describe() for output in outputs) or "none"
    if not outputs:
        raise AudioError("meeting audio: the sound server has no output to caption")
    if not selector:
        return None
    if selector.isdigit():
        match = [output for output in outputs if output.index == int(selector)]
    else:
        wanted = selector.lower()
        match = [output for output in outputs if wanted in output.name.lower() or wanted in output.description.lower()]
        exact = [output for output in match if wanted in (output.name.lower(), output.description.lower())]
        match = exact or match
    if len(match) == 1:
        return match[0]
    if not match:
        raise UsageError(f"--meeting-audio {selector!r} matches no output; outputs: {listed}")
    names = "; ".join(output.describe() for output in match)
    raise UsageError(f"--meeting-audio {selector!r} matches several outputs, give the number: {names}")


class MeetingAudioSource(LiveSource):
    """What an output plays, as 16-bit mono chunks at `sample_rate`: the default output
    (followed when it changes) or a named one. `pause()` sends silence; `stop()` ends the
    stream after the current chunk; `duration` ends it after that many seconds."""

    def __init__(
        self,
        output: str | None = None,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        duration: float | None = None,
        buffer_seconds: float = 10.0,
    ):
        super().__init__(sample_rate, chunk_ms, duration, buffer_seconds)
        self.follows_default = not output
        try:
            import pasimple  # noqa: F401  (fail now, before any connection, if it is missing)
        except ImportError:
            raise AudioError(f"meeting audio needs pulsectl and pasimple: {INSTALL_HINT}") from None
        outputs = list_meeting_outputs()
        pinned = choose_output(outputs, output)
        current = pinned or next((o for o in outputs if o.is_default), outputs[0])
        self.output = current  # what is captured now
        self.description = f"meeting audio {current.description}" + (" (the default output, followed)" if not pinned else "")
        self._stream_name = f"captioner meeting audio {os.getpid()}-{id(self)}"
        self._chunk = chunk_bytes(sample_rate, chunk_ms)
        self._capacity = max(1, int(buffer_seconds * 1000 / chunk_ms))
        self._stopping = threading.Event()
        self._buffers: collections.deque[bytes] = collections.deque()
        self._dropped = 0
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._loop is not None and self._ready is not None:
            self._loop.call_soon_threadsafe(self._ready.set)

    # ------------------------------------------------------------ the loop's side

    async def chunks(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        threading.Thread(target=self._record, name="captioner-meeting-audio", daemon=True).start()
        threading.Thread(target=self._watch, name="captioner-meeting-watch", daemon=True).start()
        limit = None if self.duration is None else int(self.duration * self.sample_rate) * 2
        sent = 0
        try:
            while not self._stopping.is_set() and (limit is None or sent < limit):
                try:
                    await asyncio.wait_for(self._ready.wait(), STALL_SECONDS)
                except TimeoutError:
                    raise AudioError(f"{self.description} stopped delivering audio") from None
                self._ready.clear()
                if self._failure is not None:
                    raise self._failure
                if self._dropped:
                    self._warn("dropped", f"captioner fell behind the meeting audio and dropped "
                                          f"{self._dropped * self.chunk_ms / 1000:.1f} s so far")
                while self._buffers and (limit is None or sent < limit):
                    chunk = self._buffers.popleft()
                    chunk = bytes(len(chunk)) if self.paused else chunk
                    if limit is not None:
                        chunk = chunk[: limit - sent].ljust(len(chunk), b"\0")  # no chunk under 50 ms
                    sent += len(chunk)
                    yield chunk
        finally:
            self._stopping.set()

    def _arrived(self, block: bytes) -> None:
        """On the loop: keep a block, unless the loop has fallen `buffer_seconds` behind."""
        if len(self._buffers) >= self._capacity:
            self._dropped += 1
        else:
            self._buffers.append(block)
        if self._ready is not None:
            self._ready.set()

    def _failed(self, error: BaseException) -> None:
        self._failure = error
        if self._ready is not None:
            self._ready.set()

    def _tell_loop(self, callback: Callable, value) -> bool:
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(callback, value)
        except RuntimeError:
            return False  # the loop closed: capture is ending
        return True

    # ------------------------------------------------------------ the recording thread

    def _record(self) -> None:
        import pasimple

        stream = None
        try:
            stream = pasimple.PaSimple(
                pasimple.PA_STREAM_RECORD, pasimple.PA_SAMPLE_S16LE, 1, self.sample_rate, app_name="captioner",
                stream_name=self._stream_name, device_name=self.output.monitor,
                fragsize=self._chunk,  # or the server sends about 2 s at a time
            )
            while not self._stopping.is_set():
                if not self._tell_loop(self._arrived, stream.read(self._chunk)):
                    return
        except pasimple.PaSimpleError as error:
            if not self._stopping.is_set():
                code = next((c for c in PULSE_ERRORS if str(error).endswith(f" {c}")), None)
                reason = PULSE_ERRORS.get(code, str(error))
                self._tell_loop(self._failed, AudioError(f"{self.description}: {reason}"))
        finally:
            if stream is not None:
                stream.close()  # here, in the reading thread: never while a read is in flight

    # ------------------------------------------------------------ the watcher thread

    def _watch(self) -> None:
        """Keep our recording on the output it should capture, whatever the server does."""
        pulsectl = _pulsectl()
        try:
            pulse = _connect("captioner-meeting-watch")
        except AudioError as error:
            self._tell_loop(self._failed, error)
            return
        with pulse:
            pulse.event_mask_set("server", "sink", "source_output")
            pulse.event_callback_set(lambda event: (_ for _ in ()).throw(pulsectl.PulseLoopStop))
            while not self._stopping.is_set():
                try:
                    failure = self._keep_on_target(pulse)
                    if failure is not None:
                        self._tell_loop(self._failed, failure)
                        return
                    pulse.event_listen(timeout=1.0)  # wakes on a change, or checks once a second
                    time.sleep(0.2)  # a burst of events, or a stream the server is still placing
                except pulsectl.PulseDisconnected:
                    self._tell_loop(self._failed, AudioError(f"{self.description}: the sound server went away"))
                    return
                except pulsectl.PulseError:
                    continue  # a transient state (PipeWire's '@DEFAULT_SINK@' while a sink goes)

    def _keep_on_target(self, pulse) -> AudioError | None:
        """Move our recording to the monitor it should be on; an AudioError when the output
        it captures is gone and there is nothing to follow."""
        sinks = {sink.name: sink for sink in pulse.sink_list()}
        wanted = pulse.server_info().default_sink_name if self.follows_default else self.output.name
        sink = sinks.get(wanted)
        if sink is None:
            if self.follows_default and sinks:
                return None  # the server is still choosing the new default
            gone = "the default output" if self.follows_default else f"the output {self.output.description}"
            return AudioError(f"meeting audio: {gone} disappeared (unplugged?); the captions so far are kept")
        if sink.name != self.output.name:
            self._say(f"meeting audio now captures {sink.description}: the default output changed")
            self.output = MeetingOutput(sink.index, sink.name, sink.description, sink.monitor_source_name, True)
        ours = [so for so in pulse.source_output_list()
                if so.proplist.get("media.name") == self._stream_name
                and so.proplist.get("application.process.id") == str(os.getpid())]
        if ours:
            monitor = pulse.get_source_by_name(sink.monitor_source_name)
            if ours[0].source != monitor.index:
                pulse.source_output_move(ours[0].index, monitor.index)
        return None

    def _say(self, message: str) -> None:
        report = self._report
        if report is not None:
            self._tell_loop(report, CaptionError(kind="audio", message=message, fatal=False))


def open_meeting_audio(output: str | None, **options) -> MeetingAudioSource:
    """The meeting-audio source for this platform: an output's monitor through the sound
    server on Linux; elsewhere a loopback input device named `output`, through PortAudio."""
    if sys.platform.startswith("linux"):
        return MeetingAudioSource(output or None, **options)
    if not output:
        raise UsageError("on Windows and macOS, name the loopback device: --meeting-audio NAME "
                         "(WASAPI loopback, BlackHole, ...; see docs/meeting-audio.md and 'captioner devices')")
    from .microphone import MicrophoneSource

    source = MicrophoneSource(output, **options)
    source.description = f"meeting audio {source.description}"
    return source  # type: ignore[return-value]
