"""The hooks a captioner plugin can implement, in the order they fire.

Every hook is documented for plugin authors in docs/plugins.md; a test fails when one
is missing there or has no test.

Event hooks (`on_*`) may be plain functions or coroutine functions. Each plugin gets
its events in order from its own queue: a plain function runs in that plugin's own
worker thread and a coroutine on the event loop, so a slow plugin delays neither the
audio nor the other plugins. A hook that raises is reported to the other plugins
through `on_error` and the session goes on.
"""

from __future__ import annotations

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("captioner")
hookimpl = HookimplMarker("captioner")


# Start-up: called synchronously, before any audio is read.


@hookspec
def add_options(parser, command):
    """Add command-line options to `command` ("replay", "serve", ...): `parser.add_argument(...)`."""


@hookspec
def configure(config):
    """Receive the parsed configuration (`config.option(name)`); raise UsageError to refuse it."""


@hookspec
def register_recognizers(register):
    """Contribute offline recognizers: `register(name, factory, description)`."""


@hookspec
def register_translators(register):
    """Contribute translation backends: `register(name, factory, description)`."""


@hookspec
def register_commands(commands):
    """Add subcommands: `commands.add_parser(...)`, with `set_defaults(command_function=f)`."""


# Per event, while captioning.


@hookspec
def on_session_begin(session):
    """A streaming session began (`Begin`); a reconnect begins another one."""


@hookspec
def on_partial(turn):
    """A turn in progress changed; its text may still change."""


@hookspec
def on_final(turn):
    """A turn is final: delivered exactly once, in turn order."""


@hookspec
def on_translation(translation):
    """A final turn translated into another language, in the order of the finals."""


@hookspec
def on_audio_level(level):
    """The input level of the audio being sent, about five times a second."""


@hookspec
def on_error(error):
    """Something went wrong: a `CaptionError`, fatal or survived."""


# Shutdown.


@hookspec
def on_session_end(summary):
    """Captioning ended, after the last final; called once, even after a fatal error."""
