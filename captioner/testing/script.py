"""Transcript scripts: what the fake server "hears" in a fixture WAV, with word timings.

A script is JSON: an object whose `turns` list holds each turn's `speaker`, optional
formatted `text`, and `words`, each with `text` (unformatted, as the service sends it),
`start` and `end` in ms on the WAV's clock, and optional `formatted` and `confidence`.
`fixtures/generate.py` writes one beside every fixture WAV.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class ScriptError(ValueError):
    pass


@dataclass(frozen=True)
class ScriptWord:
    text: str
    start: int
    end: int
    formatted: str
    confidence: float = 0.95


@dataclass(frozen=True)
class ScriptTurn:
    words: tuple[ScriptWord, ...]
    speaker: str | None = None
    text: str | None = None  # formatted, with punctuation and casing

    @property
    def start(self) -> int:
        return self.words[0].start

    @property
    def end(self) -> int:
        return self.words[-1].end

    @property
    def plain_text(self) -> str:
        return " ".join(word.text for word in self.words)


@dataclass(frozen=True)
class TranscriptScript:
    turns: tuple[ScriptTurn, ...]
    path: Path | None = None  # the JSON it was loaded from

    @classmethod
    def load(cls, path: str | os.PathLike) -> TranscriptScript:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise ScriptError(f"{path}: cannot read transcript script ({error.strerror})") from None
        except ValueError as error:
            raise ScriptError(f"{path}: not JSON ({error})") from None
        try:
            return replace(cls.from_dict(data), path=Path(path))
        except ScriptError as error:
            raise ScriptError(f"{path}: {error}") from None

    @classmethod
    def from_dict(cls, data: Any) -> TranscriptScript:
        if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
            raise ScriptError("a transcript script is an object with a 'turns' list")
        turns = tuple(_turn(turn, index) for index, turn in enumerate(data["turns"]))
        previous_end = 0
        for index, turn in enumerate(turns):
            if turn.start < previous_end:
                raise ScriptError(f"turn {index} starts before the previous turn ends")
            previous_end = turn.end
        return cls(turns)

    def reference_audio(self) -> bytes | None:
        """The 16 kHz mono PCM of the WAV beside the script (NAME.wav for NAME.json), if any."""
        return reference_audio(self.path.with_suffix(".wav")) if self.path else None

    @property
    def finals(self) -> list[str]:
        """Each turn's unformatted text: what a client should receive as finals."""
        return [turn.plain_text for turn in self.turns]


def _turn(data: Any, index: int) -> ScriptTurn:
    if not isinstance(data, dict) or not isinstance(data.get("words"), list) or not data["words"]:
        raise ScriptError(f"turn {index} needs a non-empty 'words' list")
    words = []
    last = 0
    for position, word in enumerate(data["words"]):
        where = f"turn {index}, word {position}"
        try:
            text, start, end = word["text"], word["start"], word["end"]
        except (TypeError, KeyError):
            raise ScriptError(f"{where}: needs 'text', 'start' and 'end'") from None
        if not isinstance(text, str) or not text.strip():
            raise ScriptError(f"{where}: 'text' must be a non-empty string")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in (start, end)):
            raise ScriptError(f"{where}: 'start' and 'end' must be integers (ms)")
        if not last <= start <= end:
            raise ScriptError(f"{where}: times must not go backwards ({start}-{end} after {last})")
        last = end
        words.append(
            ScriptWord(
                text=text,
                start=start,
                end=end,
                formatted=word.get("formatted") or text,
                confidence=float(word.get("confidence", 0.95)),
            )
        )
    speaker = data.get("speaker")
    return ScriptTurn(tuple(words), speaker=str(speaker) if speaker is not None else None, text=data.get("text"))


def reference_audio(wav: str | os.PathLike) -> bytes | None:
    """A file's PCM when it is 16 kHz mono 16-bit (what the fake server can listen for)."""
    import soundfile

    try:
        info = soundfile.info(str(wav))
    except (RuntimeError, OSError):
        return None
    if info.samplerate != 16000 or info.channels != 1 or info.subtype != "PCM_16":
        return None
    return soundfile.read(str(wav), dtype="int16")[0].astype("<i2").tobytes()
