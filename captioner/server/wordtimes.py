"""Word times for recognizers that give none (Moonshine tiny ships no timestamp model).

An estimate, and documented as one: the words are laid over the turn's speech frames
(from the voice activity detector), each taking a share proportional to its length in
characters. Pauses stay pauses, so a turn's first and last words land close to the
truth; words in the middle of a long stretch of speech can be off by a few hundred ms.
"""

from __future__ import annotations

from .recognizer import RecognizedWord
from .endpointing import FRAME_MS, speech_spans


def estimate_word_times(text: str, speech_flags: list[bool]) -> tuple[RecognizedWord, ...]:
    words = text.split()
    if not words:
        return ()
    spans = speech_spans(speech_flags) or [(0, max(1, len(speech_flags)))]
    total = sum(end - start for start, end in spans)
    weights = [len(word) + 1 for word in words]
    scale = total / sum(weights)

    def at(position: float) -> float:
        """Seconds from the audio start of `position` frames into the speech."""
        for start, end in spans:
            if position <= end - start:
                return (start + position) * FRAME_MS / 1000
            position -= end - start
        return spans[-1][1] * FRAME_MS / 1000

    placed, cursor = [], 0.0
    for word, weight in zip(words, weights):
        begin = cursor
        cursor += weight * scale
        # The share includes the gap after the word (its +1); the word itself ends before it.
        placed.append(RecognizedWord(word, at(begin), at(cursor - scale), confidence=0.0))
    return tuple(placed)
