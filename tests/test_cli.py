"""The captioner command: output, exit codes, and one clear line for every bad input."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript
from conftest import fixture

HELLO = str(fixture("hello.wav"))
MEETING = str(fixture("meeting.wav"))
SCRIPT = TranscriptScript.load(fixture("meeting.json"))


@pytest.fixture(scope="module")
def server():
    with FakeServerThread(FakeStreamingServer(SCRIPT, api_key="the-right-key")) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_piped_output_is_only_the_finals_one_per_line(cli, server):
    result = cli("replay", MEETING, "--url", server.url, "--fast", env={"ASSEMBLYAI_API_KEY": "the-right-key"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(line + "\n" for line in SCRIPT.finals)
    session = server.connections[-1].session_id
    assert result.stderr.splitlines() == [
        f"captioner: captioning meeting.wav (16000 Hz, 1 ch, Signed 16 bit PCM) via "
        f"{server.url}?sample_rate=16000&encoding=pcm_s16le (session {session})"
    ]


def test_the_key_can_come_from_a_dotenv_file_and_is_never_printed(cli, server, tmp_path):
    (tmp_path / ".env").write_text("ASSEMBLYAI_API_KEY=the-right-key\n")
    result = cli("replay", HELLO, "--url", server.url, "--fast", "--timestamps", "--speaker-labels", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("[00:00] A: good morning")
    assert "the-right-key" not in result.stdout + result.stderr


def test_quiet_and_formatted(cli, server):
    result = cli("replay", MEETING, "--url", server.url, "--fast", "--format-turns", "-q", env={"ASSEMBLYAI_API_KEY": "the-right-key"})
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [turn.text for turn in SCRIPT.turns]


def test_on_a_terminal_partials_are_redrawn_and_finals_printed_once(server):
    primary, secondary = pty.openpty()
    env = {**os.environ, "ASSEMBLYAI_API_KEY": "the-right-key", "COLUMNS": "200", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "captioner", "replay", HELLO, "--url", server.url, "--speed", "8", "-q"],
        stdout=secondary, stderr=subprocess.PIPE, env=env,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
    assert process.wait(timeout=60) == 0
    text = output.decode()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    final = "good morning everyone thanks for joining the weekly planning meeting"
    assert "\x1b[2;3m" in text  # partials are dim and italic
    assert "good morning everyone" in plain  # a partial on its way
    assert text.count(final) == 2  # once dim as the last partial, once plain as the final
    assert text.count("\x1b[2;3m" + final) == 1
    assert [line.strip() for line in plain.replace("\r", "\n").splitlines()].count(final) == 2


def test_help_lists_plugin_options(cli):
    result = cli("replay", "--help")
    assert result.returncode == 0
    assert "--timestamps" in result.stdout and "plugin terminal" in result.stdout
    assert "--fast" in result.stdout and "--url" in result.stdout


def bad_audio(tmp_path):
    (tmp_path / "notes.wav").write_text("not audio\n" * 100)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000)
    return tmp_path


@pytest.mark.parametrize(
    "args, code, fragments",
    [
        (["replay", "missing.wav"], 5, ["captioner: error:", "missing.wav: no such file"]),
        (["replay", "notes.wav"], 5, ["notes.wav: not an audio file libsndfile can read"]),
        (["replay", "empty.wav"], 5, ["empty.wav: contains no audio"]),
        (["replay", HELLO, "-p", "no_such_plugin_module"], 2, ["-p no_such_plugin_module: cannot import plugin module"]),
        (["replay", HELLO, "--disable-plugin", "nonesuch"], 2, ["--disable-plugin nonesuch: no such plugin; known: ", "moonshine", "terminal"]),
        (["replay", HELLO, "--chunk-ms", "20"], 2, ["captioner replay: error:", "50 to 1000 ms", "--help"]),
        (["replay", HELLO, "--unknown-flag"], 2, ["unrecognized arguments: --unknown-flag"]),
        (["replay", HELLO, "--recognizer", "whisper-xl"], 2, ["unknown recognizer 'whisper-xl'; installed: ", "moonshine, pocketsphinx"]),
        (["replay", HELLO, "--url", "wss://streaming.assemblyai.com/v3/ws", "--fast"], 2, ["--fast", "4029"]),
        (["replay", HELLO, "--url", "http://example.test"], 2, ["not a WebSocket URL"]),
        (["replay", HELLO, "--url", "https://host/v3/ws?token=SECRET-T0KEN"], 2, ["token=***"]),
        (["replay", HELLO, "--url", "ws://user:hunter2@host/v3/ws"], 4, ["ws://***@host/v3/ws"]),
        (["replay", HELLO, "--url", "ws://[::1/v3/ws"], 2, ["not a valid URL"]),
        (["replay", HELLO, "--url", "ws://127.0.0.1:99999/v3/ws"], 2, ["not a valid URL"]),
        (["replay", HELLO, "--sample-rate", "10"], 2, ["8000 to 48000 Hz"]),
        (["replay", "missing.wav", "--url", "htp://127.0.0.1:8765"], 2, ["--url: not a WebSocket URL", "htp://"]),
        (["replay", HELLO, "--max-reconnects", "-1"], 2, ["--max-reconnects", "must be 0 or more"]),
        (["token", "--url", "ws//127.0.0.1"], 2, ["--url: not a WebSocket URL"]),
        (["fake-server", "--script", "x.json", "--port", "99999"], 2, ["not a port number"]),
        (["replay", "missing.wav", "-p", "x.py"], 2, ["-p x.py: no such file"]),
        (["fake-server", "--script", "missing.json"], 2, ["missing.json: cannot read transcript script"]),
        (["fake-server", "--script", "notes.wav"], 2, ["notes.wav: not JSON"]),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(cli, tmp_path, args, code, fragments):
    bad_audio(tmp_path)
    result = cli(*args, cwd=tmp_path)
    assert_one_line_error(result, code, *fragments)
    assert "SECRET-T0KEN" not in result.stderr and "hunter2" not in result.stderr


def test_a_bad_captioner_url_names_the_variable(cli):
    result = cli("replay", "missing.wav", env={"CAPTIONER_URL": "127.0.0.1:8765/v3/ws"})
    assert_one_line_error(result, 2, "CAPTIONER_URL: not a WebSocket URL")


def test_an_input_captioner_may_not_read_says_permission_denied(cli, tmp_path):
    locked = tmp_path / "locked.wav"
    locked.write_bytes(fixture("hello.wav").read_bytes())
    locked.chmod(0)
    # root reads anything: drop the capabilities that let it, so the file mode holds.
    prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
              "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    result = subprocess.run([*prefix, sys.executable, "-m", "captioner", "replay", str(locked), "--url",
                             "ws://127.0.0.1:9/v3/ws"], capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, 5, f"{locked}: permission denied")


def test_no_input_device_is_one_error_line(cli):
    if os.path.exists("/proc/asound/cards") and open("/proc/asound/cards").read().strip() != "--- no soundcards ---":
        pytest.skip("this machine has a sound card")
    result = cli("devices", env={"PULSE_SERVER": "unix:/nonexistent"})
    assert_one_line_error(result, 5, "captioner: error: no input devices found")


def test_serve_on_ipv6_loopback_needs_no_key():
    process = subprocess.Popen([sys.executable, "-m", "captioner", "serve", "--host", "::1", "--port", "0",
                                "--recognizer", "pocketsphinx"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert re.fullmatch(r"ws://\[::1\]:\d+/v3/ws", process.stdout.readline().strip()), process.stderr.read()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_an_unreadable_dotenv_is_one_line(cli, tmp_path):
    (tmp_path / ".env").write_bytes(b"ASSEMBLYAI_API_KEY=\xff\xfe\n")
    assert_one_line_error(cli("replay", HELLO, cwd=tmp_path), 2, ".env: cannot read it", "UTF-8")


def test_a_closed_pipe_ends_quietly(server, tmp_path):
    shell = f"{sys.executable} -m captioner replay {MEETING} --url {server.url} --fast -q | head -n 2"
    result = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ASSEMBLYAI_API_KEY": "the-right-key"})
    assert result.stdout.splitlines() == SCRIPT.finals[:2]
    assert result.stderr == ""


def test_a_server_nobody_listens_on(cli):
    url = f"ws://127.0.0.1:{free_port()}/v3/ws"
    assert_one_line_error(cli("replay", HELLO, "--url", url, "--fast"), 4, "cannot connect to", "connection refused")


def test_a_server_that_rejects_the_key_with_4001(cli, server):
    key = "sk-recognisable-4f9c1e"
    result = cli("replay", HELLO, "--url", server.url, "--fast", env={"ASSEMBLYAI_API_KEY": key})
    assert_one_line_error(result, 3, "closed with 4001 (not authorized)", "check ASSEMBLYAI_API_KEY")
    assert key not in result.stdout + result.stderr


def test_fake_server_prints_its_url_first(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "captioner", "fake-server", "--script", str(fixture("hello.json"))],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/v3/ws", line), line
        result = subprocess.run(
            [sys.executable, "-m", "captioner", "replay", HELLO, "--url", line, "--fast"],
            capture_output=True, text=True, timeout=60,
        )
        assert result.stdout.splitlines() == TranscriptScript.load(fixture("hello.json")).finals
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0 and re.fullmatch(r"captioner \d+\.\d+\.\d+\n", result.stdout)


def start_replay(server, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "captioner", "replay", MEETING, "--url", server.url, "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ASSEMBLYAI_API_KEY": "the-right-key"},
    )


def test_ctrl_c_stops_cleanly_and_keeps_the_sentence_being_spoken(server):
    process = start_replay(server, "--speed", "2")
    first = process.stdout.readline()  # the first final: we are mid-meeting
    assert first.strip() == SCRIPT.finals[0]
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopping; waiting for the last captions" in err and "Traceback" not in err
    finals = [first.strip()] + rest.splitlines()
    assert 1 <= len(finals) < len(SCRIPT.finals)  # stopped early
    record = server.connections[-1]
    record.finished.wait(10)
    assert record.received(str)[-1] == '{"type": "Terminate"}' and record.close_code == 1000
    # Nothing heard was lost: Terminate flushed the turn in progress, so every word the
    # server received audio for is in a final (the last one possibly cut short).
    assert finals[:-1] == SCRIPT.finals[: len(finals) - 1]
    assert SCRIPT.finals[len(finals) - 1].startswith(finals[-1])
    heard_ms = len(record.audio) / 32
    heard_words = sum(1 for turn in SCRIPT.turns for word in turn.words if word.end <= heard_ms)
    assert sum(len(final.split()) for final in finals) == heard_words


def test_a_second_ctrl_c_exits_at_once():
    # Replies lag 3 s, so after the first Ctrl-C the run is still waiting for its finals.
    with FakeServerThread(FakeStreamingServer(SCRIPT, reply_delay_ms=3000)) as slow:
        process = start_replay(slow, "--speed", "4", "--terminate-timeout", "60")
        process.stdout.readline()
        process.send_signal(signal.SIGINT)
        assert "stopping" in process.stderr.readline()  # the first one was handled
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip().splitlines() == ["captioner: interrupted"]

