"""The hooks a captioner plugin can implement, in the order they fire.

This module is the one list of hooks: the dispatcher delivers the event hooks
(`EVENT_HOOKS`, every `on_*` below), and the tests check that each hook has a test and a
section in docs/plugins.md, so none can be added without both.

Every call goes through pluggy's hook callers (`pm.hook`), one plugin at a time, so a
plugin that raises stops no other (see captioner.plugins.hooks). Event hooks may be
plain functions or coroutine functions: each plugin gets its events in order from its
own queue, a plain function on that plugin's own worker thread, a coroutine on the
event loop, so a slow plugin delays neither the audio nor the other plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    import argparse

    import pluggy

    from .events import AudioLevel, CaptionError, MeetingSummary, Session, Translation, Turn
    from .settings import Config

hookspec = HookspecMarker("captioner")
hookimpl = HookimplMarker("captioner")


# Start-up: called synchronously, before any audio is read.


@hookspec(historic=True)
def add_hookspecs(plugin_manager: pluggy.PluginManager) -> None:
    """Add hooks of your own for other plugins: `plugin_manager.add_hookspecs(module)`.

    :param plugin_manager: the run's pluggy plugin manager.
    """


@hookspec
def add_options(parser: argparse._ArgumentGroup, command: str) -> None:
    """Add command-line options to `command` ("replay", "run", "serve"): `parser.add_argument(...)`.

    :param parser: an argument group titled after your plugin.
    :param command: the command being built.
    """


@hookspec
def configure(config: Config) -> None:
    """Receive the parsed configuration (`config.option(name)`); raise UsageError to refuse it.

    :param config: the command, its options, and the run's handles (plugin manager,
        settings, meeting, output files).
    """


@hookspec
def register_recognizers(register: Callable[..., None]) -> None:
    """Contribute offline recognizers: `register(name, factory, description)`.

    :param register: call it once per recognizer; `factory(config)` returns a Recognizer.
    """


@hookspec
def register_commands(commands: argparse._SubParsersAction) -> None:
    """Add subcommands: `commands.add_parser(...)`, with `set_defaults(command_function=f)`.

    :param commands: argparse's subparsers of `captioner`.
    """


# Per event, while captioning.


@hookspec
def on_session_begin(session: Session) -> None:
    """A streaming session began (`Begin`); a reconnect begins another one.

    :param session: the service session, placed on the meeting clock.
    """


@hookspec
def on_partial(turn: Turn) -> None:
    """A turn in progress changed; its text may still change.

    :param turn: the turn so far (`is_final` false).
    """


@hookspec
def on_final(turn: Turn) -> None:
    """A turn is final: delivered exactly once, in turn order.

    :param turn: the settled turn.
    """


@hookspec
def on_translation(translation: Translation) -> None:
    """A final turn translated into another language, in the order of the finals.

    :param translation: the translated text, with the original turn.
    """


@hookspec
def on_audio_level(level: AudioLevel) -> None:
    """The input level of the audio being sent, about five times a second.

    :param level: loudness in dBFS, and whether the source is paused.
    """


@hookspec
def on_error(error: CaptionError) -> None:
    """Something went wrong: a `CaptionError`, fatal or survived.

    :param error: what happened, in one line.
    """


# Shutdown.


@hookspec
def on_meeting_end(summary: MeetingSummary) -> None:
    """Captioning ended: called once per plugin, after its last event, even after a fatal error.

    :param summary: what the meeting sent, received and survived.
    """


HOOKS: tuple[str, ...] = tuple(name for name, value in list(globals().items()) if hasattr(value, "captioner_spec"))
EVENT_HOOKS: tuple[str, ...] = tuple(name for name in HOOKS if name.startswith("on_"))
# Events plugins emit for other plugins (`config.meeting.emit`), not the engine.
PLUGIN_EVENTS: tuple[str, ...] = ("on_translation",)
