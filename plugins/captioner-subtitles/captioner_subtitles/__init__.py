"""SubRip and WebVTT caption files, each cue written and flushed as its final arrives.

    captioner replay meeting.wav --srt meeting.srt --vtt meeting.vtt [--translate es]

The files are valid at every moment, so a killed process leaves a usable file. With the
translate plugin, each translation is written to a track beside the original
(`meeting.es.srt`), one cue per original cue, with the same times. Only the public
events and hooks are used.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import srt
import webvtt
import webvtt.vtt
from webvtt.models import Timestamp

from captioner import OutputFiles, OutputPath, UsageError, hookimpl

from .cues import CueRules, distribute, split_cues

__all__ = ["SubtitleWriter", "CueRules"]


@hookimpl
def add_options(parser, command):
    if command == "serve":
        return
    parser.add_argument("--srt", metavar="PATH", type=OutputPath, help="write SubRip captions to PATH as they are spoken")
    parser.add_argument("--vtt", metavar="PATH", type=OutputPath, help="write WebVTT captions to PATH as they are spoken")
    parser.add_argument("--subtitle-max-chars", type=int, default=42, metavar="N",
                        help="characters per caption line (default 42)")
    parser.add_argument("--subtitle-max-lines", type=int, default=2, metavar="N",
                        help="lines per caption (default 2)")
    parser.add_argument("--subtitle-max-seconds", type=float, default=7.0, metavar="S",
                        help="seconds per caption at most (default 7)")
    parser.add_argument("--subtitle-speakers", action="store_true",
                        help="start each turn's first caption with its speaker label ('A: ...'); with "
                        "two channels (run --meeting-audio) every turn's first caption says who spoke")


@hookimpl
def configure(config):
    paths = {kind: config.option(kind) for kind in ("srt", "vtt") if config.option(kind)}
    if not paths or config.plugin_manager is None:
        return
    rules = CueRules(
        max_chars=_at_least(config.option("subtitle_max_chars", 42), 10, "--subtitle-max-chars"),
        max_lines=_at_least(config.option("subtitle_max_lines", 2), 1, "--subtitle-max-lines"),
        max_seconds=_at_least(config.option("subtitle_max_seconds", 7.0), 1, "--subtitle-max-seconds"),
    )
    writer = SubtitleWriter(paths, rules, speakers=bool(config.option("subtitle_speakers")), outputs=config.outputs)
    # Translated tracks open when their first translation comes: claim their paths now,
    # so a collision (with the input, or another output) is refused before any audio.
    for language in filter(None, (code.strip() for code in str(config.option("translate") or "").split(","))):
        for kind, path in writer.paths.items():
            config.outputs.claim(translated_path(path, language), Track.option(kind, language))
    config.plugin_manager.register(writer, name="subtitle-writer")


def _at_least(value, minimum, flag):
    if value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}")
    return value


class Track:
    """One open caption file, SubRip or WebVTT."""

    def __init__(self, path: Path, kind: str, outputs: OutputFiles, language: str | None = None):
        self.path, self.kind = path, kind
        self.file = outputs.open(path, self.option(kind, language))
        self.count = 0
        if kind == "vtt":
            self.file.write("WEBVTT\n\n")
        self.file.flush()

    @staticmethod
    def option(kind: str, language: str | None) -> str:
        """How errors name the track: "--srt", or "--srt (its es translation)"."""
        return f"--{kind}" + (f" (its {language} translation)" if language else "")

    def write(self, cue) -> None:
        self.count += 1
        if self.kind == "srt":
            subtitle = srt.Subtitle(
                index=self.count,
                start=datetime.timedelta(milliseconds=cue.start_ms),
                end=datetime.timedelta(milliseconds=cue.end_ms),
                content=cue.text,
            )
            block = srt.compose([subtitle], reindex=False)
        else:
            caption = webvtt.Caption(start=_vtt_time(cue.start_ms), end=_vtt_time(cue.end_ms), text=_vtt_escape(cue.text))
            block = webvtt.vtt.to_str([caption], [], [], []).split("\n\n", 1)[1] + "\n"
        self.file.write(block)
        self.file.flush()  # on disk for the next reader, and for a process killed right after

    def close(self) -> None:
        self.file.close()


def _vtt_time(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return str(Timestamp(hours, minutes, seconds, millis))


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def translated_path(path: Path, language: str) -> Path:
    """meeting.srt -> meeting.es.srt"""
    return path.with_name(f"{path.stem}.{language}{path.suffix}")


class SubtitleWriter:
    """Writes each final as cues. Its hooks run on its own thread, one at a time, in order,
    so it needs no lock (captioner's dispatcher guarantees that)."""

    def __init__(self, paths: dict[str, str], rules: CueRules = CueRules(), speakers: bool = False,
                 outputs: OutputFiles | None = None):
        self.rules = rules
        self.speakers = speakers
        self.outputs = outputs or OutputFiles()
        self.paths = {kind: Path(path) for kind, path in paths.items()}
        self.tracks = {kind: Track(path, kind, self.outputs) for kind, path in self.paths.items()}
        self.translated: dict[tuple[str, str], Track] = {}

    def cues(self, turn):
        words = [(w.text, w.start_ms, w.end_ms) for w in turn.words]
        if not words and turn.start_ms is not None and turn.text:
            words = [(turn.text, turn.start_ms, turn.end_ms)]
        # Who spoke: always when there are two channels ("You: ", "Meeting A: "), the
        # service's speaker label with --subtitle-speakers.
        shown = turn.label and (self.speakers or turn.label != turn.speaker)
        prefix = f"{turn.label}: " if shown else ""
        return split_cues(words, self.rules, prefix)

    @hookimpl
    def on_final(self, turn):
        cues = self.cues(turn)
        for track in self.tracks.values():
            for cue in cues:
                track.write(cue)

    @hookimpl
    def on_translation(self, translation):
        cues = distribute(translation.text, self.cues(translation.turn), self.rules.max_chars)
        for kind, path in self.paths.items():
            key = (kind, translation.language)
            if key not in self.translated:
                self.translated[key] = Track(
                    translated_path(path, translation.language), kind, self.outputs, translation.language
                )
            for cue in cues:
                self.translated[key].write(cue)

    @hookimpl
    def on_meeting_end(self, summary):
        for track in [*self.tracks.values(), *self.translated.values()]:
            track.close()
