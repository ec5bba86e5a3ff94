"""The API key appears in no output: not stdout, stderr, caption files, the log, the
Markdown, `captioner plugins`, or the hook trace."""

from __future__ import annotations

import subprocess
import sys

from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript, close_at
from conftest import fixture

KEY = "sk-live-7c1d9e2f-RECOGNISABLE"


def test_a_recognisable_key_leaks_nowhere(tmp_path):
    script = TranscriptScript.load(fixture("meeting.json"))
    env = {"ASSEMBLYAI_API_KEY": KEY, "CAPTIONER_TRACE_PLUGINS": "1", "PATH": "/usr/bin:/bin"}
    outputs = []
    with FakeServerThread(FakeStreamingServer(script, api_key=KEY, faults=[close_at(9000, 1011)],
                                              reference=script.reference_audio())) as server:
        run = subprocess.run(
            [sys.executable, "-m", "captioner", "replay", str(fixture("meeting.wav")), "--url",
             server.url + "?token=" + KEY, "--fast", "--srt", "out.srt", "--vtt", "out.vtt", "--log", "out.jsonl"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
        )
        assert server.connections[0].headers["Authorization"] == KEY  # it was used
    assert run.returncode == 0, run.stderr[-2000:]
    assert "reconnecting" in run.stderr and "trace:" in run.stderr  # the paths that print the most ran
    outputs += [run.stdout, run.stderr]
    for name in ("out.srt", "out.vtt", "out.jsonl", "out.md"):
        outputs.append((tmp_path / name).read_text())
    for command in (["plugins", "--all"], ["replay", "--help"], ["--version"]):
        listed = subprocess.run([sys.executable, "-m", "captioner", *command], capture_output=True, text=True,
                                timeout=60, env=env)
        outputs += [listed.stdout, listed.stderr]
    refused = subprocess.run([sys.executable, "-m", "captioner", "replay", str(fixture("hello.wav")), "--url",
                              f"ws://u:{KEY}@127.0.0.1:9/v3/ws"], capture_output=True, text=True, timeout=60, env=env)
    outputs += [refused.stdout, refused.stderr]
    assert refused.returncode == 4
    leaked = [output for output in outputs if KEY in output]
    assert not leaked, leaked[0][:500]
