"""The meeting in progress, as plugins act on it: `config.meeting`.

A translator emits `on_translation` for the other plugins; any plugin can report a
survived problem with `error(...)`, end the current turn now, or change session settings
live. Safe to call from a plugin's worker thread or the event loop. Outside a meeting
(before it starts, after it ends) nothing is sent anywhere.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from ..client.untrusted import Untrusted
from ..events import CaptionError
from ..hookspecs import PLUGIN_EVENTS
from ..protocol import codec
from ..protocol.messages import ClientMessage, ForceEndpoint, UpdateConfiguration

if TYPE_CHECKING:
    from ..client.engine import Engine
    from .dispatch import PluginDispatcher

# Plugins' text may come from a network service too (a translation): made safe here.
_UNTRUSTED = Untrusted()


class Meeting:

    def __init__(self) -> None:
        self._dispatcher: PluginDispatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: Engine | None = None
        self._protocol = "v3"

    def attach(self, dispatcher: PluginDispatcher, engine: Engine | None = None, protocol: str = "v3") -> None:
        self._dispatcher, self._engine, self._protocol = dispatcher, engine, protocol
        self._loop = asyncio.get_running_loop()

    def detach(self) -> None:
        self._dispatcher = self._loop = self._engine = None

    def force_endpoint(self) -> None:
        """Ask the service to end the current turn now (ForceEndpoint)."""
        self._control(ForceEndpoint())

    def update_configuration(self, **settings: Any) -> None:
        """Change session settings live (UpdateConfiguration), e.g. max_turn_silence=800.
        They also hold for the sessions a reconnect starts. What the service would refuse
        (an unknown setting, a wrong type) raises ValueError here."""
        codec(self._protocol).check_update(settings)
        self._control(UpdateConfiguration(settings))

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Deliver an event to the other plugins (`on_translation`)."""
        if hook not in PLUGIN_EVENTS:
            raise ValueError(f"plugins may emit {', '.join(PLUGIN_EVENTS)}, not {hook!r}")
        kwargs = {name: _UNTRUSTED.fields(value) for name, value in kwargs.items()}
        # After the meeting's end nothing more is delivered: a late translation is dropped.
        self._call(lambda dispatcher: dispatcher.ended or dispatcher.emit(hook, **kwargs))

    def error(self, message: str, plugin: str | None = None) -> None:
        """Report a problem the plugin survived: it reaches every plugin's on_error."""
        error = CaptionError(kind="plugin", message=_UNTRUSTED.text(message), fatal=False, plugin=plugin)
        self._call(lambda dispatcher: dispatcher.report(error))

    def _control(self, message: ClientMessage) -> None:
        engine = self._engine
        if engine is not None:
            self._call(lambda dispatcher: engine.control(message))

    def _call(self, action: Callable[[PluginDispatcher], object]) -> None:
        dispatcher, loop = self._dispatcher, self._loop
        if dispatcher is None or loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            action(dispatcher)
        else:
            try:
                loop.call_soon_threadsafe(action, dispatcher)
            except RuntimeError:
                pass  # the meeting's loop is gone
