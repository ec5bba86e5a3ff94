"""Subtitle cues and files: splitting rules, valid files at every moment, and replays."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import srt
import webvtt

from captioner import SessionParams, Settings, UsageError
from captioner.testing import TranscriptScript
from captioner_subtitles import SubtitleWriter
from captioner_subtitles.cues import Cue, CueRules, distribute, split_cues, wrap

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCRIPT = TranscriptScript.load(FIXTURES / "meeting.json")


def words_of(text: str, start: int = 0, step: int = 300):
    return [(word, start + i * step, start + i * step + step - 50) for i, word in enumerate(text.split())]


def test_a_short_turn_is_one_cue_from_its_first_word_to_its_last():
    (cue,) = split_cues(words_of("hello there"))
    assert (cue.start_ms, cue.end_ms, cue.lines, cue.words) == (0, 550, ("hello there",), 2)


def test_long_turns_split_between_words_within_the_limits():
    text = "the design team finished the new website but we still need to test it on phones before the launch"
    cues = split_cues(words_of(text), CueRules(max_chars=20, max_lines=2, max_seconds=7))
    assert " ".join(" ".join(c.lines) for c in cues) == text  # nothing lost, nothing split inside a word
    assert all(len(line) <= 20 for c in cues for line in c.lines)
    assert all(len(c.lines) <= 2 for c in cues)
    assert all(c.end_ms - c.start_ms <= 7000 for c in cues)
    assert all(a.end_ms <= b.start_ms for a, b in zip(cues, cues[1:]))


def test_seven_seconds_at_most_per_cue():
    cues = split_cues(words_of("a b c d e f g h i j k l", step=1000), CueRules(max_chars=80, max_lines=2, max_seconds=7))
    assert [c.words for c in cues] == [7, 5]
    assert all(c.end_ms - c.start_ms <= 7000 for c in cues)


def test_a_speaker_prefix_opens_the_first_line():
    cues = split_cues(words_of("hello there"), prefix="B: ")
    assert cues[0].lines == ("B: hello there",)


def test_a_word_longer_than_a_line_still_gets_a_line_of_its_own():
    cues = split_cues(words_of("a supercalifragilisticexpialidocious b"), CueRules(max_chars=10, max_lines=2))
    assert [line for c in cues for line in c.lines] == ["a", "supercalifragilisticexpialidocious", "b"]


def test_a_translation_is_laid_over_the_same_cues():
    original = [Cue(0, 1000, ("one two three",), 3), Cue(1000, 2000, ("four five six",), 3)]
    placed = distribute("uno dos tres cuatro cinco seis siete", original, 42)
    assert [(c.start_ms, c.end_ms) for c in placed] == [(0, 1000), (1000, 2000)]
    assert " ".join(" ".join(c.lines) for c in placed) == "uno dos tres cuatro cinco seis siete"
    assert wrap("a bb ccc dddd", 6) == ("a bb", "ccc", "dddd")
    # Never an empty cue: a short translation still gives each cue a word, or "…".
    three = original + [Cue(2000, 3000, ("seven eight nine",), 3)]
    assert [c.lines for c in distribute("uno dos tres", three, 42)] == [("uno",), ("dos",), ("tres",)]
    assert [c.lines for c in distribute("uno", three, 42)] == [("…",), ("uno",), ("…",)]


def read_srt(path: Path) -> list[srt.Subtitle]:
    return list(srt.parse(path.read_text(encoding="utf-8")))


def test_replay_writes_files_that_parse_and_hold_every_final_once(tmp_path, replay):
    options = {"srt": str(tmp_path / "m.srt"), "vtt": str(tmp_path / "m.vtt"), "subtitle_max_chars": 42,
               "subtitle_max_lines": 2, "subtitle_max_seconds": 7.0, "subtitle_speakers": True}
    import captioner_subtitles

    settings = Settings(session=SessionParams(format_turns=True, speaker_labels=True))  # the server sends each final twice
    result = replay(FIXTURES / "meeting.wav", plugins=[captioner_subtitles], options=options, settings=settings)
    assert result.error is None
    raw = (tmp_path / "m.srt").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no byte-order mark
    subtitles = read_srt(tmp_path / "m.srt")
    captions = webvtt.read(str(tmp_path / "m.vtt"))
    assert [s.content for s in subtitles] == [c.text for c in captions]
    expected = [f"{turn.speaker}: {turn.text}" for turn in SCRIPT.turns]
    joined, cursor = [], 0
    for turn, line in zip(SCRIPT.turns, expected):
        # The cues of each turn, in order, make up exactly that turn's formatted text.
        texts = []
        while cursor < len(subtitles) and subtitles[cursor].end <= datetime.timedelta(milliseconds=turn.end):
            texts.append(subtitles[cursor].content.replace("\n", " "))
            start = subtitles[cursor].start.total_seconds() * 1000
            assert turn.start <= start and subtitles[cursor].end.total_seconds() * 1000 <= turn.end
            cursor += 1
        joined.append(" ".join(texts))
    assert joined == expected and cursor == len(subtitles)
    assert all(a.end <= b.start for a, b in zip(subtitles, subtitles[1:]))
    assert all(len(line) <= 42 for s in subtitles for line in s.content.splitlines())


@pytest.mark.parametrize("path, message", [
    ("missing-dir/out.srt", "the directory"),
    (".", "is a directory"),
])
def test_an_output_path_that_cannot_work_fails_at_start(tmp_path, path, message):
    with pytest.raises(UsageError, match=message):
        SubtitleWriter({"srt": str(tmp_path / path)})


def test_a_read_only_directory_fails_at_start(tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere: use a path that truly cannot be written
        target = Path("/proc/version.srt")
    else:
        target = locked / "out.srt"
    with pytest.raises(UsageError, match="cannot write it"):
        SubtitleWriter({"vtt": str(target)})
