"""Single-key controls for a live meeting, when stdin is a terminal.

The terminal is put in cbreak mode (keys arrive one by one, unechoed, while Ctrl-C still
sends SIGINT) and stdin is watched by the event loop, so reading keys never blocks
anything. The terminal's mode is restored on exit, whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Callable


class KeyboardControls:
    def __init__(self, bindings: dict[str, Callable[[], None]]):
        self.bindings = bindings
        self._saved = None
        self._fd: int | None = None

    def __enter__(self) -> KeyboardControls:
        if not sys.stdin.isatty():
            return self
        import termios
        import tty

        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        asyncio.get_running_loop().add_reader(self._fd, self._on_input)
        return self

    def _on_input(self) -> None:
        try:
            keys = os.read(self._fd, 32).decode(errors="ignore")
        except OSError:
            return
        for key in keys:
            action = self.bindings.get(key.lower())
            if action is not None:
                action()

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is None:
            return
        import termios

        asyncio.get_running_loop().remove_reader(self._fd)
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._fd = None
