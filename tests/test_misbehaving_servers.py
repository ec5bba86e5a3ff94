"""Servers that break the protocol: every stop is bounded, every case is one line, and no
text from the network reaches a terminal or a file unsafe.

The servers are `captioner.testing.misbehaving.MisbehavingServer`. Stops are checked by
counting connections (no reconnect storm) and by the run ending at all (the subprocess
timeout), never by how long it took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from captioner.testing import ServerThread
from captioner import Secret, Settings
from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript, malformed_at
from captioner.testing.misbehaving import MisbehavingServer
from conftest import fixture

HELLO = str(fixture("hello.wav"))
KEY = "sk-live-4e8a-ECHOED-KEY"


def captioner(*args, env=None, cwd=None, timeout=90):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "CAPTIONER_"))}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "captioner", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=cwd)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("captioner: error:")]


@pytest.fixture
def misbehaving():
    threads = []

    def start(behaviour: str, **options) -> MisbehavingServer:
        thread = ServerThread(MisbehavingServer(behaviour, **options))
        threads.append(thread)
        return thread.__enter__()

    yield start
    for thread in threads:
        thread.__exit__(None, None, None)


@pytest.mark.parametrize("behaviour", ["ignore-terminate", "begin-then-silence"])
def test_a_server_that_never_confirms_the_end_is_given_up_once(misbehaving, behaviour):
    server = misbehaving(behaviour)
    run = captioner("replay", HELLO, "--url", server.url, "--fast", "--terminate-timeout", "1")
    assert run.returncode == 4, run.stderr
    (line,) = error_lines(run.stderr)
    assert "no Termination" in line and "may be missing" in line
    assert "Traceback" not in run.stderr and "reconnecting" not in run.stderr
    assert server.connections == 1  # not a reconnect storm
    if behaviour == "ignore-terminate":
        assert run.stdout.splitlines() == ["hello there"]  # the finals that came are kept


def test_ctrl_c_with_a_server_that_ignores_terminate_ends_after_one_timeout(misbehaving):
    server = misbehaving("ignore-terminate")
    process = subprocess.Popen(
        [sys.executable, "-m", "captioner", "replay", str(fixture("meeting.wav")), "--url", server.url,
         "--terminate-timeout", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "hello there"  # mid-meeting
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 4, err
    (line,) = error_lines(err)
    assert "no Termination" in line and "may be missing" in line
    assert server.connections == 1


def test_a_second_ctrl_c_still_quits_at_once(misbehaving):
    server = misbehaving("begin-then-silence")
    process = subprocess.Popen(
        [sys.executable, "-m", "captioner", "replay", HELLO, "--url", server.url, "--terminate-timeout", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "captioning" in process.stderr.readline()  # the session began
    process.send_signal(signal.SIGINT)
    assert "stopping" in process.stderr.readline()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130


def test_a_server_that_never_begins_is_named_and_the_run_ends(misbehaving):
    server = misbehaving("never-begin")
    run = captioner("replay", str(fixture("meeting.wav")), "--url", server.url)
    assert run.returncode == 6, run.stderr
    (line,) = error_lines(run.stderr)
    assert "connected to" in line and "never began a session" in line and "AssemblyAI v3 server?" in line
    assert server.connections == 1


def test_an_echo_server_is_not_a_v3_server(misbehaving):
    server = misbehaving("echo")
    run = captioner("replay", str(fixture("meeting.wav")), "--url", server.url)
    assert run.returncode == 6, run.stderr
    assert run.stderr.strip().splitlines() == error_lines(run.stderr)  # nothing but the one line
    (line,) = error_lines(run.stderr)
    assert "is not an AssemblyAI v3 server" in line
    assert server.connections == 1


def test_an_oversize_message_is_named_and_not_retried(misbehaving):
    server = misbehaving("oversize")
    run = captioner("replay", HELLO, "--url", server.url, "--fast")
    assert run.returncode == 6, run.stderr
    (line,) = error_lines(run.stderr)
    assert "over 1 MiB" in line and "dropped" not in line
    assert server.connections == 1


def test_repeated_identical_warnings_are_counted_not_printed_one_per_frame(tmp_path):
    script = TranscriptScript.load(fixture("hello.json"))
    faults = [malformed_at(ms, b"\x00\x01binary") for ms in range(200, 4000, 50)]
    with FakeServerThread(FakeStreamingServer(script, faults=faults, reference=script.reference_audio())) as server:
        run = captioner("replay", HELLO, "--url", server.url, "--fast")
    assert run.returncode == 0, run.stderr
    malformed = [line for line in run.stderr.splitlines() if "malformed" in line]
    assert len(malformed) == 2, run.stderr  # the first, and the count at the end
    assert malformed[1].endswith(f"(and {len(faults) - 1} more like it)")
    assert run.stdout.splitlines() == script.finals


def test_escape_sequences_from_the_server_reach_no_terminal_and_no_file(misbehaving, tmp_path):
    server = misbehaving("hostile-text")
    run = captioner("replay", HELLO, "--url", server.url, "--fast", "--srt", "c.srt", "--vtt", "c.vtt",
                    "--log", "c.jsonl", "--subtitle-speakers", "--timestamps", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    outputs = {"stdout": run.stdout, "stderr": run.stderr}
    outputs.update({name: (tmp_path / name).read_text() for name in ("c.srt", "c.vtt", "c.jsonl", "c.md")})
    for name, text in outputs.items():
        unsafe = sorted({f"U+{ord(c):04X}" for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
                         or c == "\u202e"})
        assert not unsafe, f"{name} has {unsafe}: {text!r}"
    assert "hello there friend again" in run.stdout  # the words survive, the escapes do not
    assert "pwned" not in "".join(outputs.values())  # a title change is removed whole, not shown
    final = [json.loads(line) for line in outputs["c.jsonl"].splitlines() if '"final"' in line][0]
    assert final["text"] == "hello there friend again"


def test_a_key_the_server_echoes_is_masked_everywhere(misbehaving, tmp_path, replay):
    server = misbehaving("echo-key")
    run = captioner("replay", HELLO, "--url", server.url, "--fast", "--log", "c.jsonl",
                    env={"ASSEMBLYAI_API_KEY": KEY, "CAPTIONER_TRACE_PLUGINS": "1"}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert server.connections == 2  # the close was survived
    everything = run.stdout + run.stderr + (tmp_path / "c.jsonl").read_text() + (tmp_path / "c.md").read_text()
    assert KEY not in everything
    assert "your key *** is old" in run.stderr and "key=*** rejected" in run.stderr
    assert "internal error for ***" in run.stderr

    # Plugins' error events are masked too, not only what is printed.
    result = replay(fixture("hello.wav"), server=misbehaving("echo-key"),
                    settings=Settings(credential=Secret(KEY)))
    assert result.errors and all(KEY not in error.message for error in result.errors)
    assert any("***" in error.message for error in result.errors)
