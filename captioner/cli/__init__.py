"""The `captioner` command: options and commands (`commands`), the configuration file
(`config_file`), single-key controls on a terminal (`keyboard`)."""

from .commands import main

__all__ = ["main"]
