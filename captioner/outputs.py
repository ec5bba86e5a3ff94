"""The files a run writes (captions, logs), checked before any audio is sent.

One `OutputFiles` per run knows the run's input files and every output claimed so far.
A path that is the input (the recording being replayed) or another output is refused
with one line, comparing resolved paths and, for files that exist, device and inode:
so `./meeting.wav`, a symlink to it or a hard link cannot get around the check, and
`--srt x --vtt x` cannot write a file that is neither.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, TextIO

from .errors import UsageError


@dataclass(frozen=True)
class _Claim:
    path: Path  # resolved
    what: str  # "the input file", "--srt"
    inode: tuple[int, int] | None  # (device, inode) when the file exists


def _claim(path: Path, what: str) -> _Claim:
    try:
        stat = os.stat(path)
        inode: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
    except OSError:
        inode = None
    return _Claim(Path(os.path.realpath(path)), what, inode)


class OutputPath(str):
    """The argparse type of an option that names a file captioner writes:
    `parser.add_argument("--srt", type=OutputPath)`. Every such option is claimed before
    any plugin is configured, so no plugin opens (and truncates) a file that turns out
    to be the input or another output."""


class OutputFiles:
    """The inputs and outputs of one run: `claim` a path before writing it, or `open` it."""

    def __init__(self, inputs: Iterable[str | os.PathLike] = ()):
        self._claims = [_claim(Path(path), "the input file") for path in inputs]

    def claim_options(self, parser: argparse.ArgumentParser, options: Mapping[str, object]) -> None:
        """Claim the value of every `OutputPath` option of `parser` given in `options`."""
        for action in parser._actions:
            value = options.get(action.dest)
            if action.type is OutputPath and value:
                self.claim(value, action.option_strings[-1])

    def claim(self, path: str | os.PathLike, option: str) -> Path:
        """Reserve `path` for the output named by `option` (e.g. "--srt"), or raise one
        UsageError line when it is an input or another output."""
        path = Path(path)
        new = _claim(path, option)
        for claim in self._claims:
            if claim.path == new.path or (claim.inode is not None and claim.inode == new.inode):
                if claim.what == option:
                    return path  # the same output claimed again (an appended log reopened)
                where = "" if str(path) == str(claim.path) else f" ({claim.path})"
                raise UsageError(f"{option} {path}: that is {claim.what}{where}; writing it would destroy it, "
                                 "choose another path")
        self._claims.append(new)
        return path

    def open(self, path: str | os.PathLike, option: str, mode: str = "w") -> TextIO:
        """Claim `path`, then open it for writing now, as UTF-8 without BOM and with \\n
        line ends: one UsageError line if it cannot be."""
        path = self.claim(path, option)
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: the directory {parent} does not exist")
        if path.is_dir():
            raise UsageError(f"{option} {path}: is a directory")
        try:
            return open(path, mode, encoding="utf-8", newline="\n")
        except OSError as error:
            raise UsageError(f"{option} {path}: cannot write it ({error.strerror or error})") from None
