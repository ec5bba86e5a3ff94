"""The example plugin's tests: only public names (captioner, captioner.testing, fixtures)."""

from pathlib import Path

import pytest

import captioner_shout
from captioner import UsageError, hookimpl
from captioner.testing import TranscriptScript, drop_at

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"  # captioner's own, in this example
HELLO = FIXTURES / "hello.wav"  # with hello.json beside it: the script the fake server plays


def test_every_final_is_written_in_capitals(replay, tmp_path):
    out = tmp_path / "shout.txt"
    result = replay(HELLO, plugins=[captioner_shout], options={"--shout-file": str(out)})
    assert result.error is None
    assert out.read_text().splitlines() == [text.upper() for text in TranscriptScript.load(FIXTURES / "hello.json").finals]


def test_the_recording_itself_is_refused_before_any_audio(replay):
    with pytest.raises(UsageError, match="that is the input file"):
        replay(HELLO, plugins=[captioner_shout], options={"shout_file": str(HELLO)})


def test_a_dropped_connection_loses_no_final(replay, fake_server, tmp_path):
    out = tmp_path / "shout.txt"
    server = fake_server(FIXTURES / "hello.json", faults=[drop_at(1500)])
    result = replay(HELLO, server=server, plugins=[captioner_shout], options={"--shout-file": str(out)})
    assert result.summary.reconnects == 1 and result.problems() == []
    assert out.read_text().splitlines() == [text.upper() for text in result.final_texts]


class Counts:
    finals = 0

    @hookimpl
    def on_final(self, turn):
        self.finals += 1


def test_it_works_beside_other_plugins(replay, tmp_path):
    counter = Counts()
    replay(HELLO, plugins=[captioner_shout, counter], options={"--shout-file": str(tmp_path / "x.txt")})
    assert counter.finals == 1
