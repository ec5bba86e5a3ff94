"""Defaults for any option from a TOML file. Precedence: flags, then environment, then the
file, then captioner's own defaults.

    # ~/.config/captioner/config.toml (or --config PATH, or CAPTIONER_CONFIG)
    format_turns = true          # top level: every command that has the option
    recognizer = "pocketsphinx"

    [run]                        # one command only
    device = "headset"
    srt = "meeting.srt"          # plugins' options too

Keys are option names as in `--help`, with - or _. Every key is checked against the
command's parser (so a typo is not silently ignored) and converted with the option's
own type; any problem is one line naming the file, the line and the key. Secrets (the
API key, tokens) are refused: they belong in the environment or a .env file.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Mapping

from ..errors import UsageError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SECRET_KEYS = {"token", "api_key", "assemblyai_api_key", "key"}
# Options whose default comes from the environment: there, the environment wins.
ENVIRONMENT = {"url": "CAPTIONER_URL", "token": "ASSEMBLYAI_TOKEN"}


def find_config(explicit: str | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UsageError(f"--config {explicit}: no such file")
        return path
    if environ.get("CAPTIONER_CONFIG"):
        path = Path(environ["CAPTIONER_CONFIG"])
        if not path.is_file():
            raise UsageError(f"CAPTIONER_CONFIG={path}: no such file")
        return path
    base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = base / "captioner" / "config.toml"
    return path if path.is_file() else None


def load(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read it ({error})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None


def apply(commands: Mapping[str, argparse.ArgumentParser], path: Path, environ: Mapping[str, str] = os.environ) -> dict:
    """Set the file's values as defaults of the commands' parsers; returns what was set."""
    data, text = load(path)
    applied: dict[str, dict] = {}
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    for name in tables:
        if name not in commands:
            raise UsageError(f"{path}:{_line(text, name, table=True)}: [{name}]: no such command; "
                             f"tables may be {', '.join(f'[{c}]' for c in sorted(commands))}")
    top = {key: value for key, value in data.items() if not isinstance(value, dict)}
    for key in top:
        if not any(_action(parser, key) for parser in commands.values()):
            raise UsageError(f"{path}:{_line(text, key)}: unknown option {key!r}")
    for command, parser in commands.items():
        values = {key: value for key, value in top.items() if _action(parser, key)}
        values.update(tables.get(command, {}))
        defaults = {}
        for key, value in values.items():
            where = f"{path}:{_line(text, key, within=command if key in tables.get(command, {}) else None)}"
            action = _action(parser, key)
            if action is None:
                raise UsageError(f"{where}: unknown option {key!r} for captioner {command}")
            if action.dest in SECRET_KEYS or key.replace("-", "_") in SECRET_KEYS:
                raise UsageError(f"{where}: {key}: secrets belong in the environment or a .env file, "
                                 "never in a config file")
            variable = ENVIRONMENT.get(action.dest)
            if variable is not None and environ.get(variable):
                continue
            defaults[action.dest] = _convert(action, value, where, key)
        parser.set_defaults(**defaults)
        applied[command] = defaults
    return applied


def _action(parser: argparse.ArgumentParser, key: str) -> argparse.Action | None:
    dest = key.replace("-", "_")
    for action in parser._actions:
        if action.dest == dest and action.option_strings and dest not in ("help", "plugins", "disabled"):
            return action
    return None


def _convert(action: argparse.Action, value, where: str, key: str):
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {key} must be true or false, not {value!r}")
        return value
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise UsageError(f"{where}: {key} must be a single value, not {value!r}")
    converted = value
    if action.type is not None:
        try:
            converted = action.type(str(value))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise UsageError(f"{where}: {key}: {error}") from None
    elif not isinstance(value, str):
        converted = str(value)
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{where}: {key} must be one of {', '.join(map(str, action.choices))}")
    return converted


def _line(text: str, key: str, table: bool = False, within: str | None = None) -> int:
    """The line where `key` is set (in table `within`), for error messages; 1 if unsure."""
    lines = text.splitlines()
    start = 0
    if within is not None:
        for index, line in enumerate(lines):
            if re.match(rf"^\s*\[\s*{re.escape(within)}\s*\]", line):
                start = index
                break
    pattern = rf"^\s*\[\s*{re.escape(key)}\s*\]" if table else rf"^\s*[\"']?{re.escape(key)}[\"']?\s*="
    for index in range(start, len(lines)):
        if re.match(pattern, lines[index]):
            return index + 1
    return 1
