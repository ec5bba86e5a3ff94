"""The first-party plugins together, through the real command: what a user gets on disk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import srt
import webvtt

from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript
from captioner_translate.testing import FakeLibreTranslate
from conftest import fixture

SCRIPT = TranscriptScript.load(fixture("meeting.json"))


def test_srt_vtt_log_and_translation_from_one_replay(tmp_path):
    spanish = {turn.text: f"Traducción {index}." for index, turn in enumerate(SCRIPT.turns)}
    with FakeServerThread(FakeStreamingServer(SCRIPT)) as server, FakeLibreTranslate({"es": spanish}) as translator:
        result = subprocess.run(
            [sys.executable, "-m", "captioner", "replay", str(fixture("meeting.wav")), "--url", server.url, "--fast",
             "--format-turns", "--speaker-labels", "--srt", "out.srt", "--vtt", "out.vtt", "--log", "out.jsonl",
             "--translate", "es", "--translate-url", translator.url, "-q"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    formatted = [turn.text for turn in SCRIPT.turns]
    # Each final once, though the server sent every turn twice (unformatted, then formatted).
    assert result.stdout.splitlines() == [f"{t.speaker}: {t.text}" for t in SCRIPT.turns]

    subtitles = list(srt.parse((tmp_path / "out.srt").read_text(encoding="utf-8")))
    captions = webvtt.read(str(tmp_path / "out.vtt"))
    assert " ".join(s.content.replace("\n", " ") for s in subtitles) == " ".join(formatted)
    assert [c.text for c in captions] == [s.content for s in subtitles]
    assert all(a.end <= b.start for a, b in zip(subtitles, subtitles[1:]))
    spans = [(t.start, t.end) for t in SCRIPT.turns]
    for cue in subtitles:
        start, end = cue.start.total_seconds() * 1000, cue.end.total_seconds() * 1000
        assert any(a <= start and end <= b for a, b in spans), cue

    translated = list(srt.parse((tmp_path / "out.es.srt").read_text(encoding="utf-8")))
    assert [(c.start, c.end) for c in translated] == [(c.start, c.end) for c in subtitles]  # one per original cue
    assert " ".join(c.content.replace("\n", " ") for c in translated) == " ".join(spanish[t] for t in formatted)
    assert len(webvtt.read(str(tmp_path / "out.es.vtt"))) == len(captions)

    log = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [e["text"] for e in log if e["type"] == "final"] == formatted
    assert [e["text"] for e in log if e["type"] == "translation"] == [spanish[t] for t in formatted]
    markdown = (tmp_path / "out.md").read_text()
    assert "**Speakers:** A, B" in markdown and "> *es:* Traducción 0." in markdown


def test_killed_halfway_the_files_hold_every_final_written(tmp_path):
    with FakeServerThread(FakeStreamingServer(SCRIPT)) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "captioner", "replay", str(fixture("meeting.wav")), "--url", server.url,
             "--speed", "4", "--srt", "out.srt", "--vtt", "out.vtt", "--log", "out.jsonl", "-q"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        log = tmp_path / "out.jsonl"
        while time.monotonic() < deadline:
            if log.exists() and log.read_text().count('"type": "final"') >= 4:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    finals = [json.loads(line)["text"] for line in log.read_text().splitlines() if '"type": "final"' in line]
    assert 4 <= len(finals) < len(SCRIPT.turns)
    assert finals == SCRIPT.finals[: len(finals)]
    written = " ".join(SCRIPT.finals[: len(finals)])
    # Each file parses, and holds complete cues only: a prefix of the meeting's finals.
    srt_text = " ".join(s.content.replace("\n", " ") for s in srt.parse((tmp_path / "out.srt").read_text()))
    vtt_text = " ".join(c.text.replace("\n", " ") for c in webvtt.read(str(tmp_path / "out.vtt")))
    for text in (srt_text, vtt_text):
        assert " ".join(SCRIPT.finals).startswith(text) and len(text) >= len(" ".join(SCRIPT.finals[:3]))
    render = subprocess.run([sys.executable, "-m", "captioner", "log", "render", "out.jsonl"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert render.returncode == 0, render.stderr
    assert all(final in (tmp_path / "out.md").read_text() for final in SCRIPT.finals[: len(finals)])
    assert written


def test_output_paths_that_cannot_work_stop_before_any_audio(tmp_path):
    with FakeServerThread(FakeStreamingServer(SCRIPT)) as server:
        for flag in ("--srt", "--vtt", "--log"):
            result = subprocess.run(
                [sys.executable, "-m", "captioner", "replay", str(fixture("hello.wav")), "--url", server.url,
                 "--fast", flag, str(tmp_path / "missing" / "out")],
                capture_output=True, text=True, timeout=60,
            )
            assert result.returncode == 2
            assert result.stderr.strip().splitlines() == [
                f"captioner: error: {flag} {tmp_path / 'missing' / 'out'}: the directory {tmp_path / 'missing'} does not exist"
            ]
        assert server.connections == []  # nothing was sent
