"""A meeting log that survives crashes, and a Markdown transcript at the end.

    captioner run --log meeting.jsonl        # one JSON line per final, fsynced
    captioner log render meeting.jsonl       # Markdown, also from a log left by a crash

Each final is appended as one JSON line (text, words, times on the meeting clock,
speaker, session id, received time) and flushed to disk (fsync) before the next: a
crash, a kill or a power cut loses at most the line being written. At the end the
Markdown transcript is written beside the log (`meeting.md`). Appending to an existing
log continues the same meeting: the new run's times start after the old run's last.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from captioner import OutputFiles, OutputPath, UsageError, hookimpl

from .render import markdown_path, read_log, render_markdown

MEETING_GAP_MS = 1000  # between the end of one run's last turn and the next run's clock


@hookimpl
def add_options(parser, command):
    if command == "serve":
        return
    parser.add_argument("--log", metavar="PATH", type=OutputPath,
                        help="append each final to PATH as a JSON line (fsynced), and write PATH.md at the end")


@hookimpl
def register_commands(commands):
    log = commands.add_parser("log", help="work with meeting logs", description="Work with meeting logs (--log).")
    actions = log.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    render = actions.add_parser("render", help="write the Markdown transcript of a log",
                                description="Write the Markdown transcript of a meeting log, "
                                "also one left by a crash (a damaged last line is skipped).")
    render.add_argument("log_file", metavar="LOG.jsonl")
    render.add_argument("-o", "--output", metavar="PATH", help="where to write (default: LOG.md; '-' for stdout)")
    render.set_defaults(command_function=command_render)


def command_render(args, pm) -> int:
    path = Path(args.log_file)
    if not path.is_file():
        raise UsageError(f"{path}: no such log file")
    log = read_log(path)
    if not log.finals and log.damaged_lines:
        raise UsageError(f"{path}: not a meeting log (no readable final in it)")
    text = render_markdown(log)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        output = OutputFiles([path]).claim(Path(args.output) if args.output else markdown_path(path), "--output")
        output.write_text(text, encoding="utf-8")
        print(f"captioner: wrote {output} ({len(log.finals)} turns)", file=sys.stderr)
    return 0


@hookimpl
def configure(config):
    path = config.option("log")
    if path and config.plugin_manager is not None:
        config.plugin_manager.register(MeetingLog(Path(path), config.outputs), name="meeting-log-writer")


class MeetingLog:
    def __init__(self, path: Path, outputs: OutputFiles | None = None):
        self.path = path
        outputs = outputs or OutputFiles()
        self.offset_ms = 0
        if path.is_file() and path.stat().st_size:  # appending: the same meeting goes on after a gap
            previous = read_log(path)
            ends = [f.get("end_ms") or 0 for f in previous.finals]
            self.offset_ms = max(ends, default=0) + MEETING_GAP_MS
        outputs.claim(markdown_path(path), "--log (its Markdown transcript)")  # written at the end
        self.file = outputs.open(path, "--log", mode="a")

    def _append(self, entry: dict) -> None:
        self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())  # on disk before the next final: a crash loses nothing written

    def _time(self, ms: int | None) -> int | None:
        return None if ms is None else ms + self.offset_ms

    @hookimpl
    def on_session_begin(self, session):
        self._append({
            "type": "session",
            "session_id": session.id,
            "channel": session.channel,
            "started_at": session.started_at.isoformat(),
            "source": session.source,
            "backend": session.backend,
            "offset_ms": self.offset_ms + session.offset_ms,
        })

    @hookimpl
    def on_final(self, turn):
        self._append({
            "type": "final",
            "session_id": turn.session_id,
            "turn_order": turn.turn_order,
            "text": turn.text,
            "speaker": turn.speaker,
            "channel": turn.channel,
            "label": turn.label,
            "start_ms": self._time(turn.start_ms),
            "end_ms": self._time(turn.end_ms),
            "words": [
                {"text": w.text, "start_ms": self._time(w.start_ms), "end_ms": self._time(w.end_ms),
                 "confidence": w.confidence, "speaker": w.speaker}
                for w in turn.words
            ],
            "formatted": turn.is_formatted,
            "received_at": datetime.now(timezone.utc).isoformat(),
        })

    @hookimpl
    def on_translation(self, translation):
        self._append({
            "type": "translation",
            "session_id": translation.turn.session_id,
            "turn_order": translation.turn.turn_order,
            "language": translation.language,
            "text": translation.text,
            "backend": translation.backend,
        })

    @hookimpl
    def on_meeting_end(self, summary):
        self.file.close()
        markdown_path(self.path).write_text(render_markdown(read_log(self.path)), encoding="utf-8")
