"""Two channels on one meeting clock: the microphone ("mic") and what the computer plays
("meeting"), each with its own session, their finals merged in time order."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile

from captioner.client.order import MAX_HOLD_SECONDS, TimeOrder
from captioner.events import Turn, Word
from captioner.testing import EmbeddedServer, EventRecorder, ServerThread
from conftest import fixture


def final(channel: str, start: int, text: str = "x") -> Turn:
    return Turn("s", 0, text, (), True, False, start, start + 500, channel=channel)


class Mark:
    def __init__(self, start: float):
        self.start = start

    def earliest_final_start(self) -> float:
        return self.start


def test_a_final_waits_for_an_earlier_turn_in_progress_on_the_other_channel():
    async def run():
        delivered = []
        mic, meeting = Mark(1000), Mark(-1)
        order = TimeOrder({"mic": mic, "meeting": meeting}, delivered.append)
        order.final(final("mic", 3000, "later"))  # the meeting channel has a turn open since -1
        assert delivered == []
        meeting.start = 3500  # its turn became final (below) and nothing earlier can come
        order.final(final("meeting", 1000, "earlier"))
        order.release()
        return [turn.text for turn in delivered]

    assert asyncio.run(run()) == ["earlier", "later"]


def test_a_final_is_held_no_longer_than_the_bound():
    async def run():
        delivered = []
        now = [0.0]
        order = TimeOrder({"mic": Mark(0), "meeting": Mark(0)}, delivered.append, clock=lambda: now[0])
        order.final(final("mic", 3000))
        held = list(delivered)
        now[0] = MAX_HOLD_SECONDS  # the other channel's long turn is still going
        order.release()
        order.flush()
        return held, delivered

    held, delivered = asyncio.run(run())
    assert held == [] and len(delivered) == 1


def test_with_one_channel_nothing_is_held():
    delivered = []
    order = TimeOrder({"mic": Mark(-10**9)}, delivered.append)
    order.final(final("mic", 3000))
    assert len(delivered) == 1


# ----------------------------------------------------------------- the engine, two channels


def padded(tmp_path, name: str, lead_s: float, total_s: float):
    audio, rate = soundfile.read(fixture(f"{name}.wav"), dtype="int16")
    out = np.zeros(int(total_s * rate), np.int16)
    start = int(lead_s * rate)
    out[start : start + len(audio)] = audio
    path = tmp_path / f"{name}-{lead_s}.wav"
    soundfile.write(path, out, rate)
    return path


@pytest.fixture(scope="module")
def pocketsphinx_server():
    from captioner.default_plugins.pocketsphinx import PocketSphinxRecognizer

    with ServerThread(EmbeddedServer(PocketSphinxRecognizer())) as server:
        yield server


def caption_two(tmp_path, server, mic_wav, meeting_wav, settings=None):
    from captioner import Settings
    from captioner.audio.replay import WavReplaySource
    from captioner.client.engine import Engine
    from captioner.plugins.manager import build_plugin_manager

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    recorder = EventRecorder()
    pm.register(recorder, name="recorder")
    sources = {"mic": WavReplaySource(mic_wav, speed=4), "meeting": WavReplaySource(meeting_wav, speed=4)}
    engine = Engine(settings or Settings(url=server.base_url), pm)
    asyncio.run(engine.caption(sources))
    return recorder


def test_each_final_says_its_channel_and_they_come_in_time_order(tmp_path, pocketsphinx_server):
    # The mic speaks at 0.5 s, the meeting at 4 s and again at 9 s (overlapping the mic's second turn at 8 s).
    mic = padded(tmp_path, "hello", 0.5, 14)
    meeting_audio = np.concatenate([soundfile.read(padded(tmp_path, "weather", 4.0, 9.0), dtype="int16")[0],
                                    soundfile.read(fixture("mute.wav"), dtype="int16")[0], np.zeros(8000, np.int16)])
    meeting = tmp_path / "meeting-side.wav"
    soundfile.write(meeting, meeting_audio, 16000)
    recorder = caption_two(tmp_path, pocketsphinx_server, mic, meeting)
    finals = recorder.finals
    assert {turn.channel for turn in finals} == {"mic", "meeting"}
    starts = [turn.start_ms for turn in finals]
    assert starts == sorted(starts), [(t.channel, t.start_ms, t.text) for t in finals]
    assert all(turn.label == ("You" if turn.channel == "mic" else "Meeting") for turn in finals)
    by_channel = {channel: " ".join(t.text for t in finals if t.channel == channel) for channel in ("mic", "meeting")}
    assert "test" in by_channel["mic"] and "weather" in by_channel["meeting"] and "weather" not in by_channel["mic"]
    orders = [turn.turn_order for turn in finals]
    assert len(set(orders)) == len(orders)  # one numbering for the meeting, no number twice
    assert {session.channel for session in recorder.sessions} == {"mic", "meeting"}
    assert recorder.summary.finals == len(finals) and recorder.summary.ok


# ----------------------------------------------------------------- the meeting heard again by the mic


def voice(name: str) -> np.ndarray:
    return soundfile.read(fixture(f"{name}.wav"), dtype="float64")[0] * 32768


def bleed_scenario(delay_ms: int = 120, gain_db: float = -10.0):
    """The meeting says two sentences; the microphone hears them again, later and quieter,
    and the user speaks over the second one. 16 kHz samples."""
    far = np.concatenate([voice("weather"), np.zeros(8000), voice("mute"), np.zeros(16000)])
    near = np.zeros(len(far))
    start = len(voice("weather")) + 8000 + 12000  # the user talks over the meeting's second sentence
    user = voice("hello")[: len(far) - start]
    near[start : start + len(user)] = user
    echo = np.concatenate([np.zeros(delay_ms * 16), far])[: len(far)] * 10 ** (gain_db / 20)
    noise = np.random.default_rng(7).normal(0, 32768 * 10 ** (-60 / 20), len(far))
    return far, near + echo + noise, near, echo


def energy_db(samples: np.ndarray) -> float:
    return 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-9)


def test_the_gate_finds_the_echo_and_mutes_it_but_not_the_user():
    from captioner.client.bleed import FRAME, LOOKAHEAD, EchoGate

    far, mic, near, echo = bleed_scenario()
    gate = EchoGate()
    out = np.concatenate([gate.process(far[i : i + 800].astype(np.int16), mic[i : i + 800].astype(np.int16))
                          for i in range(0, len(far) - 799, 800)])
    out = out[LOOKAHEAD * FRAME :]  # the gate's lookahead
    assert abs(gate.tracker.delay - 120 * 16) <= 16  # found to the millisecond
    assert abs(10 * np.log10(gate.tracker.gain) - (-10)) < 1.5  # played into the mic at -10 dB
    weather = len(voice("weather"))
    locked_echo = slice(3 * 16000, weather)  # echo only, once the tracker has locked (about 2 s)
    assert energy_db(out[locked_echo]) < energy_db(mic[locked_echo]) - 30
    user_part = np.flatnonzero(np.abs(near[: len(out)]) > 300)  # where the user's voice is clear
    assert abs(energy_db(out[user_part]) - energy_db(mic[user_part])) < 1.0  # the user's voice, intact


def test_with_headphones_there_is_no_echo_and_nothing_is_muted():
    from captioner.client.bleed import EchoGate

    far, _, near, _ = bleed_scenario()
    mic = near + np.random.default_rng(3).normal(0, 32768 * 10 ** (-60 / 20), len(far))
    gate = EchoGate()
    for i in range(0, len(far) - 799, 800):
        gate.process(far[i : i + 800].astype(np.int16), mic[i : i + 800].astype(np.int16))
    assert gate.tracker.delay is None


def said(text: str, channel: str = "mic", start_ms: int | None = None, word_ms: int = 300) -> Turn:
    """A final; with `start_ms`, its words one after another, `word_ms` each."""
    tokens = text.split()
    words = () if start_ms is None else tuple(
        Word(token, start_ms + i * word_ms, start_ms + (i + 1) * word_ms, 1.0) for i, token in enumerate(tokens))
    return Turn("s", 0, text, words, True, True, start_ms, start_ms + len(tokens) * word_ms if words else None,
                channel=channel)


def test_a_microphone_final_loses_what_repeats_the_meeting():
    from captioner.client.bleed import without_repeats

    meeting = [said("The weather today is sunny with a light breeze from the west.", "meeting")]
    assert without_repeats(said("the weather today is sunny with a light"), meeting) is None
    assert without_repeats(said("yes the weather today is sunny I agree completely with you"), meeting).text == \
        "yes I agree completely with you"
    assert without_repeats(said("I agree completely"), meeting).text == "I agree completely"
    assert without_repeats(said("hello there"), []).text == "hello there"


def test_with_word_times_a_short_repeat_at_the_echo_time_goes_and_the_same_words_later_stay():
    from captioner.client.bleed import without_repeats

    # What a clean-clone run produced: the echo before the gate locked, misheard ("a" for
    # "the") and run into the user's sentence.
    meeting = [said("the weather today is sunny with the light breeze from the west", "meeting", 540)]
    mic = said("today is sunny with a light breeze hello this is a short test", start_ms=1040)
    kept = without_repeats(mic, meeting)
    assert kept.text == "hello this is a short test"
    assert [w.text for w in kept.words] == kept.text.split() and kept.start_ms == kept.words[0].start_ms == 1040 + 7 * 300
    # The user saying two of the meeting's words well after it is not echo.
    later = said("a light breeze would be nice", start_ms=4000)
    assert without_repeats(later, meeting).text == "a light breeze would be nice"
    # Nor, without word times, are two words alone.
    assert without_repeats(said("hello light breeze is nice today"), meeting).text == "hello light breeze is nice today"


def test_on_speakers_the_meeting_is_captioned_once_and_the_user_still_is(tmp_path, pocketsphinx_server):
    far, mic, _, _ = bleed_scenario(delay_ms=60)
    soundfile.write(tmp_path / "far.wav", (far / 32768).clip(-1, 1), 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "mic.wav", (mic / 32768).clip(-1, 1), 16000, subtype="PCM_16")
    recorder = caption_two(tmp_path, pocketsphinx_server, tmp_path / "mic.wav", tmp_path / "far.wav")
    said = {channel: " ".join(t.text for t in recorder.finals if t.channel == channel) for channel in ("mic", "meeting")}
    assert "weather" in said["meeting"] and "microphone" in said["meeting"]
    assert "weather" not in said["mic"] and "breeze" not in said["mic"] and "microphone" not in said["mic"], said
    assert "captions" in said["mic"] or "meetings" in said["mic"], said  # the user's own sentence
