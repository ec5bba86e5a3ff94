"""Output files plugins write (captions, logs), opened at start with one clear line on failure."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from .errors import UsageError


def open_output(path: Path, option: str, mode: str = "w") -> TextIO:
    """Open `path` (named by the command-line `option`) for writing now, before any audio
    is sent, as UTF-8 without BOM and with \\n line ends: one UsageError line if it cannot."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    try:
        return open(path, mode, encoding="utf-8", newline="\n")
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot write it ({error.strerror or error})") from None
