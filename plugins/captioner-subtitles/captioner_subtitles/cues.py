"""Turning a final turn's timed words into readable subtitle cues. Pure functions.

Broadcast conventions, configurable: at most `max_lines` lines of at most `max_chars`
characters, at most `max_seconds` per cue, split only between words. A cue runs from its
first word's start to its last word's end on the meeting clock, so cues stay inside
their turn and never overlap (turns do not overlap and words only go forward).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CueRules:
    max_chars: int = 42
    max_lines: int = 2
    max_seconds: float = 7.0


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    words: int  # how many of the turn's words it holds

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def split_cues(words: list[tuple[str, int, int]], rules: CueRules = CueRules(), prefix: str = "") -> list[Cue]:
    """Cues for `words` ((text, start_ms, end_ms), in order); `prefix` opens the first line."""
    cues: list[Cue] = []
    lines: list[str] = []
    line = prefix.rstrip() if prefix else ""
    count = 0
    start = end = 0

    def close() -> None:
        nonlocal lines, line, count
        if line:
            lines.append(line)
        if count:
            cues.append(Cue(start, max(end, start + 1), tuple(lines), count))
        lines, line, count = [], "", 0

    for text, word_start, word_end in words:
        if count and (word_end - start) > rules.max_seconds * 1000:
            close()
        if count == 0:
            start = word_start
        candidate = f"{line} {text}" if line else text
        if line and len(candidate) > rules.max_chars:
            if len(lines) + 1 >= rules.max_lines:
                close()
                start = word_start
                candidate = text
            else:
                lines.append(line)
                candidate = text
        line = candidate
        end = word_end
        count += 1
    close()
    return cues


def wrap(text: str, max_chars: int) -> tuple[str, ...]:
    """Text broken into lines of at most `max_chars`, between words."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and len(candidate) > max_chars:
            lines.append(line)
            candidate = word
        line = candidate
    if line:
        lines.append(line)
    return tuple(lines)


def distribute(text: str, cues: list[Cue], max_chars: int) -> list[Cue]:
    """A translation laid over the original's cues: same times, words shared in proportion.

    One cue per original cue, so a translated track lines up with the original.
    """
    words = text.split()
    total = sum(cue.words for cue in cues) or 1
    placed, taken, seen = [], 0, 0
    for index, cue in enumerate(cues):
        seen += cue.words
        left = len(cues) - index - 1  # cues still to fill after this one
        upto = len(words) if not left else round(len(words) * seen / total)
        if len(words) >= len(cues):
            upto = min(max(upto, taken + 1), len(words) - left)  # no cue left empty
        share = " ".join(words[taken:upto])
        taken = max(taken, upto)
        # A translation shorter than its cues: the rest say "…" rather than nothing.
        placed.append(Cue(cue.start_ms, cue.end_ms, wrap(share, max_chars) or ("…",), cue.words))
    return placed
