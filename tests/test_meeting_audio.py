"""Captioning the whole meeting through real sound servers: the other participants (what
the computer plays, "meeting") beside the microphone ("mic"), on a private PulseAudio and
on a private PipeWire with pipewire-pulse, each with a "speakers" output and a separate
microphone. Audio is played in real time; the recognizer is the embedded Moonshine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from captioner.testing.sound_server import PrivateSoundServer, SoundServerUnavailable
from conftest import fixture

SERVERS = ["pulseaudio", "pipewire"]
ECHO_WORDS = {"weather", "sunny", "breeze", "west"}  # the meeting's sentence in the bleed test


@pytest.fixture(params=SERVERS)
def sound(request, tmp_path):
    try:
        server = PrivateSoundServer(tmp_path / request.param, request.param)
    except SoundServerUnavailable as error:
        pytest.fail(f"the test sound server did not start: {error}")
    yield server
    server.stop()


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z' ]", " ", text.lower()).split())


class Run:
    """`captioner run ...` against the private server; waits until every channel's
    session has begun, so audio played next is heard."""

    def __init__(self, sound: PrivateSoundServer, *args: str, sessions: int):
        self.process = subprocess.Popen([sys.executable, "-m", "captioner", "run", "--offline", *args],
                                        env=sound.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started = []
        while len([line for line in self.started if "captioning" in line]) < sessions:
            line = self.process.stderr.readline()
            assert line, f"captioner ended before its sessions began: {''.join(self.started)}"
            self.started.append(line)

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, "".join(self.started) + err


def finals(log) -> list[dict]:
    return [entry for entry in map(json.loads, log.read_text().splitlines()) if entry["type"] == "final"]


def test_both_sides_are_captioned_each_with_its_channel_in_time_order(sound, tmp_path):
    log = tmp_path / "meeting.jsonl"
    run = Run(sound, "--meeting-audio", "--duration", "11", "--log", str(log), sessions=2)
    sound.play_to_speakers(fixture("weather.wav"))  # the other participant
    time.sleep(1.0)
    sound.play_to_microphone(fixture("hello.wav"))  # the user, talking over them
    code, out, err = run.finish()
    assert code == 0, err
    said = finals(log)
    by_channel = {channel: " ".join(f["text"] for f in said if f["channel"] == channel) for channel in ("mic", "meeting")}
    assert len(words(by_channel["meeting"]) & ECHO_WORDS) >= 3, said
    assert len(words(by_channel["mic"]) & {"short", "test", "live", "captions", "meetings"}) >= 3, said
    assert not words(by_channel["mic"]) & ECHO_WORDS and "captions" not in by_channel["meeting"]
    starts = [f["start_ms"] for f in said]
    assert starts == sorted(starts)  # in time order, on one meeting clock
    assert {f["label"] for f in said} == {"You", "Meeting"}
    assert re.search(r"^You: .*test", out, re.M) and re.search(r"^Meeting: .*breeze", out, re.M)


def test_on_speakers_the_meeting_is_captioned_once_and_the_user_still_is(sound, tmp_path):
    # The microphone hears the user and, 10 dB quieter and a little later, the speakers.
    meeting, rate = soundfile.read(fixture("weather.wav"), dtype="float32")
    user = soundfile.read(fixture("hello.wav"), dtype="float32")[0]
    mic = np.zeros(len(meeting) + len(user) // 2, np.float32)
    echo = 10 ** (-10 / 20) * meeting
    mic[640 : 640 + len(echo)] += echo  # 40 ms later
    mic[len(meeting) // 2 : len(meeting) // 2 + len(user)] += user[: len(mic) - len(meeting) // 2]
    soundfile.write(tmp_path / "mic.wav", mic, rate)
    log = tmp_path / "meeting.jsonl"
    run = Run(sound, "--meeting-audio", "--duration", "12", "--log", str(log), sessions=2)
    sound.play_to_speakers(fixture("weather.wav"))
    sound.play_to_microphone(tmp_path / "mic.wav")
    code, _, err = run.finish()
    assert code == 0, err
    said = finals(log)
    mic_words = words(" ".join(f["text"] for f in said if f["channel"] == "mic"))
    meeting_words = words(" ".join(f["text"] for f in said if f["channel"] == "meeting"))
    assert len(meeting_words & ECHO_WORDS) >= 3, said  # the meeting's words, once, as meeting
    assert not mic_words & ECHO_WORDS, said  # not again as mic
    assert len(mic_words & {"short", "test", "live", "captions", "meetings"}) >= 2, said  # the user's own


def test_capture_follows_the_default_output_when_it_changes(sound, tmp_path):
    log = tmp_path / "meeting.jsonl"
    run = Run(sound, "--meeting-audio", "--no-mic", "--duration", "14", "--log", str(log), sessions=1)
    sound.play_to_speakers(fixture("hello.wav")).wait(timeout=30)
    sound.add_sink("headphones")
    sound.set_default_output("headphones")  # headphones plugged in
    time.sleep(1.0)
    sound.play_into("headphones", fixture("weather.wav")).wait(timeout=30)
    code, _, err = run.finish()
    assert code == 0, err
    said = " ".join(f["text"] for f in finals(log))
    assert "test" in words(said) and len(words(said) & ECHO_WORDS) >= 3, said  # both outputs, in turn
    sessions = [entry for entry in map(json.loads, log.read_text().splitlines()) if entry["type"] == "session"]
    assert len(sessions) == 1  # followed without ending the session
    assert "now captures Headphones" in err


def test_a_named_output_that_disappears_ends_with_one_line_keeping_the_finals(sound, tmp_path):
    headphones = sound.add_sink("headphones")
    log = tmp_path / "meeting.jsonl"
    run = Run(sound, "--meeting-audio", "headphones", "--no-mic", "--log", str(log), sessions=1)
    sound.play_into("headphones", fixture("hello.wav")).wait(timeout=30)
    caption = run.process.stdout.readline()  # the final, before the output goes
    sound.remove_sink(headphones)  # unplugged
    code, out, err = run.finish()
    assert code == 5, err
    errors = [line for line in err.splitlines() if line.startswith("captioner: error:")]
    assert len(errors) == 1 and "Headphones disappeared" in errors[0] and "Traceback" not in err
    assert "test" in words(caption) and [f["text"] for f in finals(log)][:1] == [caption.strip()]


def test_devices_lists_microphones_and_meeting_audio_with_their_kinds(sound):
    listed = subprocess.run([sys.executable, "-m", "captioner", "devices", "--json"], env=sound.env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    devices = json.loads(listed.stdout)
    meeting = {d["name"]: d for d in devices if d["kind"] == "meeting"}
    assert meeting["speakers"]["is_default"] and meeting["speakers"]["monitor"] == "speakers.monitor"
    assert any(d["kind"] == "microphone" and d["is_default"] for d in devices)
    plain = subprocess.run([sys.executable, "-m", "captioner", "devices"], env=sound.env,
                           capture_output=True, text=True, timeout=60).stdout
    assert "meeting audio" in plain and re.search(r"^  \d+: Speakers \(speakers, default\)$", plain, re.M)


def test_an_output_that_does_not_exist_is_one_line_listing_those_that_do(sound):
    result = subprocess.run([sys.executable, "-m", "captioner", "run", "--meeting-audio", "tv-in-the-hall",
                             "--offline"], env=sound.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--meeting-audio 'tv-in-the-hall' matches no output; outputs:" in line and "Speakers (speakers, default)" in line


def test_meeting_audio_without_a_sound_server_is_one_line(cli):
    result = cli("run", "--meeting-audio", "--no-mic", "--offline", env={"PULSE_SERVER": "unix:/nonexistent"})
    assert result.returncode == 5
    (line,) = result.stderr.strip().splitlines()
    assert "meeting audio needs a PulseAudio or PipeWire sound server, and none answers" in line


def test_no_mic_without_meeting_audio_is_a_usage_error(cli):
    result = cli("run", "--no-mic", "--offline")
    assert result.returncode == 2 and "--no-mic captions the meeting audio alone: give --meeting-audio too" in result.stderr


def test_on_a_terminal_the_labels_show_and_p_pauses_both_channels_with_a_meter_each(tmp_path):
    from conftest import OnTerminal

    sound = PrivateSoundServer(tmp_path / "pulse", "pulseaudio")
    try:
        terminal = OnTerminal("run", "--offline", "--meeting-audio", "--mic-label", "Me", "--meeting-label", "Them",
                              "--duration", "12", env={**sound.env, "TERM": "xterm", "COLUMNS": "120"})
        terminal.read_for(6)  # started, both sessions begun
        sound.play_to_speakers(fixture("weather.wav")).wait(timeout=30)
        terminal.read_for(2)
        terminal.press(b"p")
        terminal.read_for(1.5)
        assert terminal.process.wait(timeout=60) == 0
        terminal.read_for(0.5)
        terminal.close()
    finally:
        sound.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.output.decode(errors="ignore"))
    assert re.search(r"Them: .*breeze", text), text[-2000:]
    assert re.search(r"mic +\S", text) and re.search(r"meeting +\S", text)  # a meter for each
    assert re.search(r"mic +paused \(p resumes\)", text) and re.search(r"meeting +paused \(p resumes\)", text)
