"""The committed fixtures pair up and agree with each other."""

from __future__ import annotations

import re

import pytest
import soundfile

from captioner.testing import TranscriptScript
from captioner.testing.script import ScriptError
from conftest import FIXTURES

NAMES = sorted(path.stem for path in FIXTURES.glob("*.wav"))


def test_there_is_a_meeting_and_short_clips():
    assert "meeting" in NAMES and len(NAMES) >= 4


@pytest.mark.parametrize("name", NAMES)
def test_each_wav_has_a_script_and_a_reference_that_agree(name):
    info = soundfile.info(FIXTURES / f"{name}.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    script = TranscriptScript.load(FIXTURES / f"{name}.json")
    reference = (FIXTURES / f"{name}.txt").read_text().splitlines()
    assert [turn.text for turn in script.turns] == reference
    for turn, line in zip(script.turns, reference):
        plain = re.sub(r"[^a-z' ]", "", line.lower()).split()
        assert turn.plain_text.split() == plain
        assert turn.speaker in ("A", "B")
    # Silence before the first word and after the last, as streaming recognizers need.
    assert script.turns[0].start >= 300
    assert info.duration * 1000 - script.turns[-1].end >= 700


def test_the_meeting_alternates_two_voices_for_about_a_minute():
    script = TranscriptScript.load(FIXTURES / "meeting.json")
    speakers = [turn.speaker for turn in script.turns]
    assert set(speakers) == {"A", "B"}
    assert all(a != b for a, b in zip(speakers, speakers[1:]))
    assert 50 <= soundfile.info(FIXTURES / "meeting.wav").duration <= 90


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "an object with a 'turns' list"),
        ({"turns": [{"words": []}]}, "non-empty 'words'"),
        ({"turns": [{"words": [{"text": "a", "start": 5}]}]}, "needs 'text', 'start' and 'end'"),
        ({"turns": [{"words": [{"text": "a", "start": 5, "end": 1}]}]}, "must not go backwards"),
        ({"turns": [{"words": [{"text": "a", "start": 0.5, "end": 1}]}]}, "integers"),
        ({"turns": [{"words": [{"text": "a", "start": 500, "end": 900}]}, {"words": [{"text": "b", "start": 100, "end": 200}]}]},
         "starts before the previous turn ends"),
    ],
)
def test_bad_scripts_are_refused_with_the_place(data, message):
    with pytest.raises(ScriptError, match=message):
        TranscriptScript.from_dict(data)
