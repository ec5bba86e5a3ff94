"""Assembling a meeting: configuration -> recognizer -> plugins -> server -> engine.

The command line, `captioner.testing.replay` and the benchmarks all caption through
here, so a meeting is put together one way: output files claimed, the offline
recognizer loaded when there is no service URL, every plugin configured (which may
refuse), then an `Engine`, in front of an in-process embedded server when captioning
offline.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import AsyncIterator, Iterable, Mapping

import pluggy

from .client.engine import Engine
from .client.settings import Settings
from .config import Config
from .outputs import OutputFiles
from .plugins.hooks import PluginHooks
from .plugins.meeting import Meeting
from .server.recognizer import DEFAULT_RECOGNIZER, Recognizer, load_recognizer


@dataclass(frozen=True)
class PreparedMeeting:
    """A meeting ready to caption: its plugins configured, its recognizer loaded (offline)."""

    config: Config
    recognizer: Recognizer | None  # None: the service at config.settings.url transcribes
    decode_workers: int | None = None

    @property
    def settings(self) -> Settings:
        assert self.config.settings is not None
        return self.config.settings


def prepare_meeting(
    command: str,
    options: Mapping[str, object],
    pm: pluggy.PluginManager,
    settings: Settings,
    *,
    outputs: OutputFiles | None = None,
    inputs: Iterable[str] = (),
) -> PreparedMeeting:
    """Configure every plugin for a meeting (a plugin may refuse: UsageError), and load
    the offline recognizer (`options["recognizer"]`) when `settings.url` is empty."""
    config = Config(command, options, pm, settings, Meeting(), outputs or OutputFiles(inputs))
    hooks = PluginHooks(pm)
    recognizer = None
    if not settings.url:
        recognizer = load_recognizer(hooks, str(options.get("recognizer") or DEFAULT_RECOGNIZER), config)
    hooks.configure(config)
    workers = options.get("decode_workers")
    return PreparedMeeting(config, recognizer, int(workers) if workers else None)


@asynccontextmanager
async def meeting_engine(prepared: PreparedMeeting) -> AsyncIterator[Engine]:
    """The engine for a prepared meeting, with the embedded server running behind it when
    captioning offline."""
    config = prepared.config
    assert config.plugin_manager is not None and config.meeting is not None
    if prepared.recognizer is None:
        yield Engine(prepared.settings, config.plugin_manager, config.meeting)
        return
    from .server.embedded import EmbeddedServer  # client code reaches the server only here

    async with EmbeddedServer(prepared.recognizer, workers=prepared.decode_workers) as server:
        # The server's own turn silences, said explicitly: what the live keys start from.
        defaults = server.recognition
        session = prepared.settings.session
        session = replace(
            session,
            min_turn_silence=session.min_turn_silence or defaults.min_turn_silence_ms,
            max_turn_silence=session.max_turn_silence or defaults.max_turn_silence_ms,
        )
        settings = replace(prepared.settings, url=server.base_url, session=session)
        yield Engine(settings, config.plugin_manager, config.meeting)
