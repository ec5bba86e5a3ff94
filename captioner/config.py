"""What plugins receive at start-up: the configuration of the run, and its handles.

The configuration is the options in effect, from the command line, the environment and
the configuration file, in that order of precedence (see captioner.cli.config_file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from .outputs import OutputFiles

if TYPE_CHECKING:
    import pluggy

    from .client.settings import Settings
    from .plugins.meeting import Meeting


@dataclass(frozen=True)
class Config:
    """What the `configure` hook receives: the command, every parsed option, and handles.

    Plugins read their own options with `config.option("srt")`. `plugin_manager` lets a
    plugin register a stateful object for the run, as pytest's terminal reporter does;
    `meeting` lets it act on the meeting while it runs; `outputs` opens its files.
    """

    command: str
    options: Mapping[str, object]
    plugin_manager: pluggy.PluginManager | None = None
    settings: Settings | None = None  # None for commands that caption nothing (serve)
    meeting: Meeting | None = None  # None for commands that caption nothing (serve)
    outputs: OutputFiles = field(default_factory=OutputFiles)

    def option(self, name: str, default: object = None) -> object:
        return self.options.get(name.lstrip("-").replace("-", "_"), default)

    def __repr__(self) -> str:
        # Short, and safe to trace: options may hold a URL with a token, or --token itself.
        given = sorted(key for key, value in self.options.items() if value not in (None, False, "", ()))
        return f"Config(command={self.command!r}, options set: {', '.join(given) or 'none'}, settings={self.settings!r})"
