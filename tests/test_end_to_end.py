"""The fixture meeting, replayed through the engine against the fake server."""

from __future__ import annotations

import numpy as np
import soundfile
import soxr

from captioner import SessionParams, Settings
from captioner.testing import TranscriptScript
from conftest import fixture

MEETING = fixture("meeting.wav")
SCRIPT = TranscriptScript.load(fixture("meeting.json"))


def test_every_scripted_final_arrives_once_in_order_after_its_partials(replay):
    result = replay(MEETING)
    assert result.error is None
    assert result.final_texts == SCRIPT.finals

    seen_final = set()
    partial_orders = set()
    for kind, event in result.events:
        if kind == "partial":
            assert event.turn_order not in seen_final, "a partial came after its turn's final"
            partial_orders.add(event.turn_order)
        elif kind == "final":
            assert event.turn_order not in seen_final
            seen_final.add(event.turn_order)
    assert partial_orders == seen_final == set(range(len(SCRIPT.turns)))


def test_the_server_received_the_wav_pcm_and_the_meeting_ended_cleanly(replay):
    result = replay(MEETING)
    record = result.server.connections[0]
    pcm = soundfile.read(MEETING, dtype="int16")[0].tobytes()
    received = bytes(record.audio)
    assert received[: len(pcm)] == pcm
    assert received[len(pcm) :] == bytes(len(received) - len(pcm))  # silence up to a whole chunk
    assert len(received) % 1600 == 0 and len(received) - len(pcm) < 1600
    assert record.received(str)[-1] == '{"type": "Terminate"}'
    assert record.sent_messages()[-1]["type"] == "Termination"
    assert record.close_code == 1000
    summary = result.summary
    assert summary.terminated and summary.ok
    assert summary.audio_seconds_sent == len(received) / 32000
    assert summary.finals == len(SCRIPT.turns) and summary.partials > summary.finals
    assert summary.session_ids == (record.session_id,)
    kinds = [kind for kind, _ in result.events]
    assert kinds[0] == "session_begin" and kinds[-1] == "meeting_end"


def test_final_times_are_the_scripted_word_times_on_the_meeting_clock(replay):
    result = replay(MEETING)
    for turn, scripted in zip(result.finals, SCRIPT.turns):
        assert [(w.text, w.start_ms, w.end_ms) for w in turn.words] == [(w.text, w.start, w.end) for w in scripted.words]
        assert (turn.start_ms, turn.end_ms) == (scripted.start, scripted.end)


def test_formatted_finals_and_speakers_when_asked(replay):
    result = replay(MEETING, settings=Settings(session=SessionParams(format_turns=True, speaker_labels=True)))
    assert result.final_texts == [turn.text for turn in SCRIPT.turns]  # once each, formatted
    assert all(turn.is_formatted for turn in result.finals)
    assert [turn.speaker for turn in result.finals] == [turn.speaker for turn in SCRIPT.turns]
    assert result.summary.finals == len(SCRIPT.turns)


def test_a_44k_stereo_float_file_gives_the_same_finals_as_its_16k_mono_original(tmp_path, replay):
    mono, rate = soundfile.read(MEETING, dtype="float32")
    stereo = soxr.resample(np.stack([mono, mono * 0.9], axis=1), rate, 44100)
    converted = tmp_path / "meeting-44k-stereo.wav"
    soundfile.write(converted, stereo, 44100, subtype="FLOAT")
    original = replay(MEETING)
    resampled = replay(converted, script=fixture("meeting.json"))
    assert resampled.final_texts == original.final_texts == SCRIPT.finals
    assert resampled.server.connections[0].params.sample_rate == 16000
    received = len(resampled.server.connections[0].audio)
    assert abs(received - len(original.server.connections[0].audio)) <= 32  # within a millisecond


def test_paced_replay_gives_the_same_events_as_unpaced(replay):
    fast = replay(fixture("hello.wav"))
    paced = replay(fixture("hello.wav"), speed=8)
    assert [(k, getattr(e, "text", None)) for k, e in paced.events if k in ("partial", "final")] == [
        (k, getattr(e, "text", None)) for k, e in fast.events if k in ("partial", "final")
    ]
