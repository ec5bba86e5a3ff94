"""The meeting log: a JSON line per final, fsynced; Markdown at the end and on demand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import captioner_meeting_log
from captioner import SessionParams, Settings, UsageError
from captioner.testing import TranscriptScript
from captioner_meeting_log import MeetingLog
from captioner_meeting_log.render import read_log, render_markdown

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCRIPT = TranscriptScript.load(FIXTURES / "meeting.json")


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_final_then_markdown(tmp_path, replay):
    log = tmp_path / "meeting.jsonl"
    result = replay(FIXTURES / "meeting.wav", plugins=[captioner_meeting_log], options={"log": str(log)},
                    settings=Settings(session=SessionParams(speaker_labels=True)))
    assert result.error is None
    lines = entries(log)
    assert lines[0]["type"] == "session" and lines[0]["session_id"] == result.server.connections[0].session_id
    finals = [line for line in lines if line["type"] == "final"]
    assert [f["text"] for f in finals] == SCRIPT.finals
    assert [f["speaker"] for f in finals] == [t.speaker for t in SCRIPT.turns]
    first = finals[0]
    assert (first["start_ms"], first["end_ms"]) == (SCRIPT.turns[0].start, SCRIPT.turns[0].end)
    assert [w["text"] for w in first["words"]] == first["text"].split() and first["received_at"].endswith("+00:00")
    markdown = (tmp_path / "meeting.md").read_text()
    assert markdown.startswith("# Meeting transcript\n")
    assert "**Speakers:** A, B" in markdown and "**Turns:** 13" in markdown and "**Duration:** 00:5" in markdown
    assert f"**[00:00] A:** {SCRIPT.finals[0]}" in markdown
    assert markdown.index(SCRIPT.finals[1]) < markdown.index(SCRIPT.finals[2])


def test_appending_continues_the_same_meeting(tmp_path, replay):
    log = tmp_path / "meeting.jsonl"
    hello = FIXTURES / "hello.wav"
    replay(hello, plugins=[captioner_meeting_log], options={"log": str(log)})
    replay(hello, plugins=[captioner_meeting_log], options={"log": str(log)})
    finals = [e for e in entries(log) if e["type"] == "final"]
    assert len(finals) == 2
    assert finals[1]["start_ms"] >= finals[0]["end_ms"] + 1000  # the second run follows the first
    markdown = (tmp_path / "meeting.md").read_text()
    assert "**Turns:** 2" in markdown


def test_a_log_left_by_a_crash_still_renders(tmp_path):
    log = tmp_path / "crashed.jsonl"
    good = [
        {"type": "session", "session_id": "s", "started_at": "2026-11-24T01:00:00+00:00"},
        {"type": "final", "session_id": "s", "turn_order": 0, "text": "first words", "start_ms": 500, "end_ms": 1500},
        {"type": "final", "session_id": "s", "turn_order": 1, "text": "second words", "start_ms": 2500, "end_ms": 3500},
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in good) + '{"type": "final", "text": "half wri')
    parsed = read_log(log)
    assert [f["text"] for f in parsed.finals] == ["first words", "second words"] and parsed.damaged_lines == 1
    result = subprocess.run([sys.executable, "-m", "captioner", "log", "render", str(log)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    markdown = (tmp_path / "crashed.md").read_text()
    assert "**[00:00]:** first words" in markdown and "**[00:02]:** second words" in markdown
    assert "1 damaged line(s) in the log were skipped" in markdown
    assert render_markdown(parsed) == markdown


def test_render_refuses_what_is_not_a_log_in_one_line(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "captioner", "log", "render", str(tmp_path / "nope.jsonl")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip().endswith("nope.jsonl: no such log file")
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json at all\n")
    result = subprocess.run([sys.executable, "-m", "captioner", "log", "render", str(junk), "-o", "-"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not a meeting log" in result.stderr


def test_render_never_writes_over_the_log_itself(tmp_path):
    log = tmp_path / "meeting.jsonl"
    log.write_text(json.dumps({"type": "final", "session_id": "s", "turn_order": 0, "text": "kept"}) + "\n")
    before = log.read_bytes()
    result = subprocess.run([sys.executable, "-m", "captioner", "log", "render", str(log), "-o", f"{tmp_path}/./meeting.jsonl"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "that is the input file" in result.stderr
    assert log.read_bytes() == before


def test_a_log_named_like_its_markdown_is_refused(tmp_path):
    with pytest.raises(UsageError, match="that is --log"):
        MeetingLog(tmp_path / "meeting.md")  # its transcript, meeting.md, would overwrite it at the end


def test_a_log_in_a_missing_directory_fails_at_start(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        MeetingLog(tmp_path / "no" / "such" / "meeting.jsonl")
