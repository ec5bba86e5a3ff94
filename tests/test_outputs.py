"""No output overwrites an input or another output: refused before any audio, in one line."""

from __future__ import annotations

import os
import shutil

import pytest

from captioner import OutputFiles, UsageError
from conftest import fixture

CLOSED = "ws://127.0.0.1:9/v3/ws"  # nothing listens: a run that got past the check would exit 4


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "meeting.wav"
    shutil.copy(fixture("hello.wav"), path)
    return path


def refused(cli, recording, *args, cwd=None):
    before = recording.read_bytes()
    run = cli("replay", str(recording), "--url", CLOSED, *args, cwd=cwd)
    assert recording.read_bytes() == before  # the recording is intact
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("captioner: error: ") and "Traceback" not in run.stderr
    return line


@pytest.mark.parametrize("option", ["--srt", "--vtt", "--log"])
def test_an_output_that_is_the_recording_is_refused(cli, recording, option):
    line = refused(cli, recording, option, str(recording))
    assert f"{option} {recording}: that is the input file" in line


def test_a_relative_path_or_dot_prefix_is_the_same_file(cli, recording):
    line = refused(cli, recording, "--srt", "./meeting.wav", cwd=recording.parent)
    assert "that is the input file" in line and str(recording) in line


def test_a_symlink_or_hard_link_to_the_recording_is_refused(cli, recording, tmp_path):
    (tmp_path / "link.srt").symlink_to(recording)
    assert "that is the input file" in refused(cli, recording, "--srt", str(tmp_path / "link.srt"))
    os.link(recording, tmp_path / "hard.vtt")
    assert "that is the input file" in refused(cli, recording, "--vtt", str(tmp_path / "hard.vtt"))


@pytest.mark.parametrize("first, second", [("--srt", "--vtt"), ("--srt", "--log"), ("--log", "--vtt")])
def test_two_outputs_on_one_path_are_refused(cli, recording, tmp_path, first, second):
    target = tmp_path / "captions.txt"
    line = refused(cli, recording, first, str(target), second, str(target))
    assert "captions.txt: that is --" in line
    assert not target.exists() or target.stat().st_size == 0  # nothing written before the refusal


def test_the_logs_markdown_and_translated_tracks_are_claimed_too(cli, recording, tmp_path):
    # --log x.jsonl writes x.md at the end; --srt out.srt with --translate es writes out.es.srt.
    assert "Markdown" in refused(cli, recording, "--log", str(tmp_path / "m.jsonl"), "--vtt", str(tmp_path / "m.md"))
    line = refused(cli, recording, "--srt", str(tmp_path / "out.srt"), "--translate", "es",
                   "--vtt", str(tmp_path / "out.es.srt"))
    assert "--srt (its es translation)" in line and "that is --vtt" in line


def test_distinct_outputs_are_written(cli, recording, tmp_path):
    run = cli("replay", str(recording), "--url", CLOSED, "--srt", str(tmp_path / "a.srt"), "--vtt",
              str(tmp_path / "a.vtt"), "--log", str(tmp_path / "a.jsonl"))
    assert run.returncode == 4, run.stderr  # got past the check, to the (closed) server


def test_output_files_accept_strings_and_say_which_output_has_the_path(tmp_path):
    outputs = OutputFiles([tmp_path / "in.wav"])
    with outputs.open(str(tmp_path / "a.srt"), "--srt") as file:
        file.write("x")
    with pytest.raises(UsageError, match="that is --srt"):
        outputs.claim(str(tmp_path / "sub" / ".." / "a.srt"), "--vtt")
    with pytest.raises(UsageError, match="that is the input file"):
        outputs.claim(tmp_path / "in.wav", "--log")
