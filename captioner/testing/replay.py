"""Replaying a WAV through the real engine, with chosen plugins, against a server.

`replay()` for plain tests (a fake server in a thread, unless one is given), and
`replay_async()` for `async def` tests: both assemble the meeting as the command line
does (captioner.runner), with only the given plugins and an `EventRecorder`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterable, Mapping

import pluggy

from ..audio.replay import WavReplaySource
from ..cli.parser import build_parser, subcommands
from ..client.settings import Settings
from ..errors import CaptionerError
from ..events import CaptionError, MeetingSummary, Turn
from ..plugins.hooks import PluginHooks
from ..outputs import OutputFiles
from ..plugins.manager import build_plugin_manager
from ..runner import meeting_engine, prepare_meeting
from .fake_server import FakeServerThread, FakeStreamingServer
from .recorder import EventRecorder
from .script import TranscriptScript, reference_audio


@dataclass
class ReplayResult:
    """What a replay did: every event in order, and what ended it if it failed."""

    recorder: EventRecorder
    server: object | None  # the server replayed against (a FakeStreamingServer records everything)
    summary: MeetingSummary | None = None
    error: CaptionerError | None = None  # what ended the replay, if it failed
    events: list = field(default_factory=list)  # (kind, event) in the order delivered

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
    options: Mapping[str, object] | None = None,
) -> ReplayResult:
    """Replay `wav` through the engine to the server at `url`, with only `plugins` (and a
    recorder). Every plugin's `configure` runs first with the `replay` command's options:
    their defaults, overridden by `options` (names or flags: {"srt": "out.srt"} or
    {"--srt": "out.srt"}); a plugin that refuses them raises its UsageError here, before
    any audio, as the command line would stop. What ends the meeting itself is
    `result.error`."""
    settings = dataclasses.replace(settings or Settings(), url=url)
    pm = _plugin_manager(plugins)
    recorder = EventRecorder()
    pm.register(recorder, name="event-recorder")
    command = subcommands(build_parser(PluginHooks(pm)))["replay"]
    given = _replay_options(command, options or {})
    outputs = OutputFiles([wav])
    outputs.claim_options(command, given)
    prepared = prepare_meeting("replay", given, pm, settings, outputs=outputs)
    source = WavReplaySource(wav, sample_rate=settings.sample_rate, chunk_ms=settings.chunk_ms, speed=speed)
    result = ReplayResult(recorder=recorder, server=None)
    try:
        async with meeting_engine(prepared) as engine:
            await engine.caption(source)
    except CaptionerError as error:
        result.error = error
    result.events = recorder.events
    result.summary = recorder.summary
    return result


def replay(
    wav: str | os.PathLike,
    *,
    script: str | os.PathLike | TranscriptScript | None = None,
    server: object | None = None,
    plugins: Iterable[object] = (),
    speed: float | None = None,
    settings: Settings | None = None,
    options: Mapping[str, object] | None = None,
    **server_options,
) -> ReplayResult:
    """Replay `wav` through a fake server playing `script` (default: the WAV's .json).

    Pass `server` to use one already running (in another thread: any server with a
    `base_url`); otherwise a FakeStreamingServer is started for this replay with
    `server_options` (faults, api_key, reply_delay_ms, ...).
    """
    arguments = dict(plugins=plugins, speed=speed, settings=settings, options=options)
    if server is not None:
        result = asyncio.run(replay_async(wav, server.base_url, **arguments))  # type: ignore[attr-defined]
        result.server = server
        return result
    if not isinstance(script, TranscriptScript):
        script = TranscriptScript.load(script or Path(wav).with_suffix(".json"))
    server_options.setdefault("reference", reference_audio(wav))  # so resent audio is placed
    with FakeServerThread(FakeStreamingServer(script, **server_options)) as started:
        result = asyncio.run(replay_async(wav, started.base_url, **arguments))
        result.server = started
        return result


def _plugin_manager(plugins: Iterable[object]) -> pluggy.PluginManager:
    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    for plugin in plugins:
        # Named after their class, so errors read "plugin Raises failed ..."
        name = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__name__
        while pm.get_plugin(name) is not None:
            name += "'"
        pm.register(plugin, name=name)
    return pm


def _replay_options(command, given: Mapping[str, object]) -> dict[str, object]:
    """The `replay` command's option defaults, plugins' options included, with `given`
    on top: what its configure hooks would see on the command line."""
    options = {action.dest: action.default for action in command._actions if action.option_strings}
    for name, value in given.items():
        options[name.lstrip("-").replace("-", "_")] = value
    return options
