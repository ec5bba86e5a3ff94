"""Deterministic, offline testing for captioner and its plugins.

- `FakeStreamingServer` / `FakeServerThread`: a real WebSocket server speaking
  AssemblyAI v3, played from a transcript script, with fault injection.
- `EventRecorder`: a plugin that keeps every event it receives.
- `replay()`: replay a WAV through the engine against a server, with chosen plugins.

The pytest plugin (`captioner.testing.pytest_plugin`, loaded automatically through the
`pytest11` entry point) wraps these as the `fake_server` and `replay` fixtures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterable

from ..audio.replay import WavReplaySource
from ..plugins.dispatch import EventBus
from ..client.engine import Engine
from ..errors import CaptionerError
from ..events import CaptionError, Session, SessionSummary, Turn
from ..hookspecs import hookimpl
from ..outputs import OutputFiles
from ..plugins.manager import build_plugin_manager, configure_plugins
from ..settings import Config, Settings
from .fake_server import (
    ANY,
    ConnectionRecord,
    FakeServerThread,
    FakeStreamingServer,
    Fault,
    close_at,
    drop_at,
    malformed_at,
)
from .script import ScriptError, TranscriptScript, reference_audio

__all__ = [
    "ANY",
    "ConnectionRecord",
    "EventRecorder",
    "FakeServerThread",
    "FakeStreamingServer",
    "Fault",
    "ReplayResult",
    "ScriptError",
    "TranscriptScript",
    "close_at",
    "drop_at",
    "malformed_at",
    "replay",
]


class EventRecorder:
    """A plugin that records every event, in the order it received them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    @hookimpl
    def on_session_begin(self, session: Session) -> None:
        self.events.append(("session_begin", session))

    @hookimpl
    def on_partial(self, turn: Turn) -> None:
        self.events.append(("partial", turn))

    @hookimpl
    def on_final(self, turn: Turn) -> None:
        self.events.append(("final", turn))

    @hookimpl
    def on_error(self, error: CaptionError) -> None:
        self.events.append(("error", error))

    @hookimpl
    def on_session_end(self, summary: SessionSummary) -> None:
        self.events.append(("session_end", summary))

    def _of(self, kind: str) -> list:
        return [event for name, event in self.events if name == kind]

    @property
    def finals(self) -> list[Turn]:
        return self._of("final")

    @property
    def partials(self) -> list[Turn]:
        return self._of("partial")

    @property
    def errors(self) -> list[CaptionError]:
        return self._of("error")

    @property
    def sessions(self) -> list[Session]:
        return self._of("session_begin")

    @property
    def final_texts(self) -> list[str]:
        return [turn.text for turn in self.finals]

    def problems(self, audio_ms: float | None = None) -> list[str]:
        """What breaks the promises every caption stream keeps, whatever the recognizer:
        finals numbered in increasing order, each number once (a reconnect may skip
        numbers); no partial after its turn's final; every final has words, whose times
        only go forward (and stay within `audio_ms`, when given). Empty when all hold:
        `assert not result.problems(duration_ms)`."""
        found = []
        orders = [turn.turn_order for turn in self.finals]
        if any(a >= b for a, b in zip(orders, orders[1:])):
            found.append(f"finals are not numbered in increasing order, once each: {orders}")
        final_seen: set[int] = set()
        for kind, event in self.events:
            if kind == "final":
                final_seen.add(event.turn_order)
            elif kind == "partial" and event.turn_order in final_seen:
                found.append(f"a partial of turn {event.turn_order} after its final: {event.text!r}")
        found += [f"final {turn.turn_order} has no words" for turn in self.finals if not turn.words]
        words = [word for turn in self.finals for word in turn.words]
        found += [f"word {w.text!r} ends before it starts ({w.start_ms}-{w.end_ms})" for w in words if w.start_ms > w.end_ms]
        found += [
            f"word times go backwards: {a.text!r} ends at {a.end_ms}, {b.text!r} starts at {b.start_ms}"
            for a, b in zip(words, words[1:])
            if a.end_ms > b.start_ms
        ]
        if words and (words[0].start_ms < 0 or (audio_ms is not None and words[-1].end_ms > audio_ms + 100)):
            found.append(f"word times {words[0].start_ms}-{words[-1].end_ms} ms fall outside the audio")
        return found


@dataclass
class ReplayResult:
    recorder: EventRecorder
    server: FakeStreamingServer | None
    summary: SessionSummary | None = None
    error: CaptionerError | None = None  # what ended the run, if it failed
    events: list = field(default_factory=list)

    @property
    def finals(self) -> list[Turn]:
        return self.recorder.finals

    @property
    def final_texts(self) -> list[str]:
        return self.recorder.final_texts

    @property
    def partials(self) -> list[Turn]:
        return self.recorder.partials

    @property
    def errors(self) -> list[CaptionError]:
        return self.recorder.errors

    def problems(self, audio_ms: float | None = None) -> list[str]:
        return self.recorder.problems(audio_ms)


async def replay_async(
    wav: str | os.PathLike,
    url: str,
    *,
    plugins: Iterable[object] = (),
    speed: float | None = None,
    settings: Settings | None = None,
    options: dict | None = None,
) -> ReplayResult:
    """Replay `wav` through the engine to `url` with only `plugins` (and a recorder).

    With `options`, each plugin's `configure` hook runs first with a Config holding them
    (as parsed command-line options would be: {"srt": "out.srt"}), and may refuse them.
    """
    settings = dataclasses.replace(settings or Settings(), url=url)
    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    for plugin in plugins:
        # Named after their class, so errors read "plugin Raises failed ..."
        name = type(plugin).__name__ if not isinstance(plugin, ModuleType) else plugin.__name__
        while pm.get_plugin(name) is not None:
            name += "'"
        pm.register(plugin, name=name)
    recorder = EventRecorder()
    pm.register(recorder, name="event-recorder")
    events = EventBus()
    if options is not None:
        configure_plugins(pm, Config("replay", options, pm, settings, events, outputs=OutputFiles([wav])))
    source = WavReplaySource(wav, sample_rate=settings.sample_rate, chunk_ms=settings.chunk_ms, speed=speed)
    result = ReplayResult(recorder=recorder, server=None)
    try:
        await Engine(settings, pm, events).caption(source)
    except CaptionerError as error:
        result.error = error
    result.events = recorder.events
    ends = recorder._of("session_end")
    result.summary = ends[-1] if ends else None
    return result


def replay(
    wav: str | os.PathLike,
    *,
    script: str | os.PathLike | TranscriptScript | None = None,
    server: FakeStreamingServer | None = None,
    plugins: Iterable[object] = (),
    speed: float | None = None,
    settings: Settings | None = None,
    options: dict | None = None,
    **server_options,
) -> ReplayResult:
    """Replay `wav` through a fake server playing `script` (default: the WAV's .json).

    Pass `server` to use one already running (in another thread); otherwise one is
    started for this replay with `server_options` (faults, api_key, ...).
    """
    if server is not None:
        result = asyncio.run(replay_async(wav, server.base_url, plugins=plugins, speed=speed, settings=settings, options=options))
        result.server = server
        return result
    if not isinstance(script, TranscriptScript):
        script = TranscriptScript.load(script or Path(wav).with_suffix(".json"))
    server_options.setdefault("reference", reference_audio(wav))  # so resent audio is placed
    with FakeServerThread(FakeStreamingServer(script, **server_options)) as started:
        result = asyncio.run(replay_async(wav, started.base_url, plugins=plugins, speed=speed, settings=settings, options=options))
        result.server = started
        return result
