"""Live captions in the terminal: a default plugin, not a special case in the engine.

On a terminal, the turn in progress is redrawn in place (dimmed: it may still change)
and each final is printed once on its own line above it. When stdout is not a terminal,
only finals are written, one per line, so `captioner replay x.wav > out.txt` gives a
clean transcript. Survived errors go to stderr as warnings; the command itself prints
the fatal one.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from captioner import AudioLevel, CaptionError, Session, Turn, hookimpl


@hookimpl
def add_options(parser, command):
    if command == "serve":
        return
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="start each caption line with its time in the meeting [mm:ss]",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no status line on stderr, only captions and errors"
    )


@hookimpl
def configure(config):
    if config.plugin_manager is not None:
        view = TerminalCaptions(
            timestamps=bool(config.option("timestamps")),
            quiet=bool(config.option("quiet")),
            meter=config.command == "run",  # a microphone: show that it hears something
        )
        config.plugin_manager.register(view, name="terminal-view")


METER_WIDTH = 30
METER_FLOOR_DB = -60.0
# A colour per channel, so the two sides of a meeting read apart at a glance.
CHANNEL_STYLES = {"mic": "bold cyan", "meeting": "bold magenta"}


def level_meter(level: AudioLevel) -> Text:
    """'mic     ██████░░░░ -23 dB': a bar from -60 dBFS (empty) to 0 dBFS (full)."""
    name = f"{level.channel:<8}"
    if level.paused:
        return Text(f"{name}paused (p resumes)", style="yellow")
    filled = round(METER_WIDTH * min(1.0, max(0.0, 1 - level.rms_dbfs / METER_FLOOR_DB)))
    style = "red" if level.peak_dbfs > -1 else "green"
    meter = Text(name)
    meter.append("█" * filled, style=style)
    meter.append("░" * (METER_WIDTH - filled), style="dim")
    meter.append(f" {level.rms_dbfs:5.1f} dB" + ("  clipping" if level.peak_dbfs > -1 else ""))
    return meter


def caption_line(turn: Turn, timestamps: bool = False) -> Text:
    """'[00:12] Meeting A: the words', the label in its channel's colour."""
    line = Text()
    if timestamps and turn.start_ms is not None:
        minutes, seconds = divmod(turn.start_ms // 1000, 60)
        line.append(f"[{minutes:02d}:{seconds:02d}] ")
    if turn.label:
        line.append(f"{turn.label}: ", style=CHANNEL_STYLES.get(turn.channel, "bold"))
    line.append(turn.display_text)
    return line


class TerminalCaptions:
    """The view; its hooks all run on this plugin's one worker thread, in order."""

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        timestamps: bool = False,
        force_terminal: bool | None = None,
        quiet: bool = False,
        meter: bool = False,
    ):
        self.quiet = quiet
        self.meter = meter
        self._partials: dict[str, Text] = {}  # channel -> its turn in progress
        self._levels: dict[str, Text] = {}  # channel -> its meter
        self.out = out or sys.stdout
        self.err = err
        self.timestamps = timestamps
        self.console = Console(
            file=self.out, force_terminal=force_terminal, highlight=False, markup=False, emoji=False
        )
        self.is_live = self.console.is_terminal
        self._pipe_closed = False
        self._live: Live | None = None

    def _view(self) -> Live:
        if self._live is None:
            self._live = Live(Text(""), console=self.console, auto_refresh=False, transient=True)
            self._live.start()
        return self._live

    def _redraw(self) -> None:
        parts = [*self._partials.values(), *self._levels.values()]
        self._view().update(Group(*parts), refresh=True)

    @hookimpl
    def on_session_begin(self, session: Session) -> None:
        if not self.quiet:
            what = f"{session.source} " if session.source else ""
            backend = f"with {session.backend} " if session.backend else ""
            channel = f"{session.channel}: " if session.channel != "mic" else ""
            self._warn(f"captioner: {channel}captioning {what}{backend}via {session.url} (session {session.id})")

    @hookimpl
    def on_partial(self, turn: Turn) -> None:
        if self.is_live:
            line = caption_line(turn, self.timestamps)
            line.stylize("dim italic")
            self._partials[turn.channel] = line
            self._redraw()

    @hookimpl
    def on_audio_level(self, level: AudioLevel) -> None:
        if self.is_live and self.meter:
            self._levels[level.channel] = level_meter(level)
            self._redraw()

    @hookimpl
    def on_final(self, turn: Turn) -> None:
        line = caption_line(turn, self.timestamps)
        if self.is_live:
            self._partials.pop(turn.channel, None)
            self._redraw()  # cleared first, or the partial is redrawn below the final
            self._view().console.print(line)
        elif not self._pipe_closed:
            try:
                self.out.write(line.plain + "\n")
                self.out.flush()
            except BrokenPipeError:
                # The reader went away (`captioner replay x | head`): stop writing,
                # quietly, and let the other plugins go on.
                self._pipe_closed = True
                _silence(self.out)

    @hookimpl
    def on_error(self, error: CaptionError) -> None:
        if error.fatal:
            return  # the command prints it, once, as it exits
        self._warn(f"captioner: warning: {error.message}")

    def _warn(self, line: str) -> None:
        # sys.stderr is looked up now, not at start: while the live view runs, rich
        # routes it above the view instead of through it.
        err = self.err or sys.stderr
        err.write(line + "\n")
        err.flush()

    @hookimpl
    def on_meeting_end(self, summary) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _silence(stream: TextIO) -> None:
    """Point a closed pipe's descriptor at /dev/null, so the flush at exit cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
