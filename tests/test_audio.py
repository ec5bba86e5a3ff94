"""WAV replay: real decoding with libsndfile, resampling with soxr, exact chunks, paced by a schedule."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile
import soxr

from captioner.audio.pcm import PcmConverter, Rechunker
from captioner.audio.replay import Pacer, WavReplaySource
from captioner.errors import AudioError
from conftest import fixture


def collect(source) -> list[bytes]:
    async def run():
        return [chunk async for chunk in source.chunks()]

    return asyncio.run(run())


def test_16k_mono_fixture_is_sent_bit_exact_in_50ms_chunks():
    source = WavReplaySource(fixture("hello.wav"), speed=None)
    chunks = collect(source)
    pcm, rate = soundfile.read(fixture("hello.wav"), dtype="int16")
    pcm = pcm.tobytes()
    assert rate == 16000 and len(pcm) % 1600 != 0  # so the tail below is a real case
    sent = b"".join(chunks)
    assert sent[: len(pcm)] == pcm
    # The service refuses chunks under 50 ms, so the tail is padded with silence.
    assert all(len(chunk) == 1600 for chunk in chunks)  # 50 ms of 16-bit mono
    assert sent[len(pcm) :] == bytes(len(sent) - len(pcm)) and len(sent) - len(pcm) < 1600


def test_44k_stereo_float_is_downmixed_and_resampled(tmp_path):
    original, _ = soundfile.read(fixture("hello.wav"), dtype="float32")
    stereo = np.stack([original, original], axis=1)
    upsampled = soxr.resample(stereo, 16000, 44100)
    path = tmp_path / "hello44.wav"
    soundfile.write(path, upsampled, 44100, subtype="FLOAT")
    converted = np.frombuffer(b"".join(collect(WavReplaySource(path, speed=None))), dtype="<i2") / 32768
    assert 0 <= len(converted) - len(original) < 800  # the tail is padded to a 50 ms chunk
    n = min(len(converted), len(original))
    noise = converted[:n] - original[:n]
    snr_db = 10 * np.log10(np.sum(original[:n] ** 2) / np.sum(noise**2))
    assert snr_db > 30, snr_db  # the same speech, not just the same length


def test_other_session_rates_and_chunk_sizes():
    chunks = collect(WavReplaySource(fixture("hello.wav"), sample_rate=8000, chunk_ms=100, speed=None))
    assert all(len(chunk) == 1600 for chunk in chunks)  # 100 ms at 8 kHz
    total_seconds = sum(map(len, chunks)) / 2 / 8000
    assert 0 <= total_seconds - soundfile.info(fixture("hello.wav")).duration < 0.1


def test_converter_is_streaming_and_matches_one_shot_resampling():
    rng = np.random.default_rng(1)
    audio = rng.uniform(-0.5, 0.5, 48000).astype(np.float32)
    converter = PcmConverter(48000, 16000)
    pieces = [converter.convert(audio[i : i + 4800], last=i + 4800 >= len(audio)) for i in range(0, len(audio), 4800)]
    streamed = np.frombuffer(b"".join(pieces), "<i2")
    whole = np.frombuffer(PcmConverter(48000, 16000).convert(audio, last=True), "<i2")
    assert len(streamed) == len(whole) == 16000
    assert np.max(np.abs(streamed.astype(int) - whole)) <= 2


def test_rechunker_keeps_every_byte():
    rechunker = Rechunker(4)
    out = rechunker.feed(b"abcdef") + rechunker.feed(b"ghij")
    assert out == [b"abcd", b"efgh"]
    assert rechunker.flush() == b"ij"
    assert rechunker.flush() == b""


def test_pacer_follows_a_schedule_without_drift():
    now = [100.0]
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(round(seconds, 6))
        now[0] += seconds + 0.01  # every sleep overshoots by 10 ms

    async def run():
        pacer = Pacer(0.05, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(5):
            await pacer.wait()

    asyncio.run(run())
    # The overshoot is taken off the next wait instead of piling up.
    assert sleeps == [0.05, 0.04, 0.04, 0.04]


def test_speed_scales_the_pacing_interval():
    source = WavReplaySource(fixture("hello.wav"), speed=4)
    assert source._pacer.interval == pytest.approx(0.05 / 4)
    assert WavReplaySource(fixture("hello.wav"), speed=None)._pacer is None


def make_bad_inputs(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 10)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000)
    header = fixture("hello.wav").read_bytes()[:44]
    (tmp_path / "truncated.wav").write_bytes(header[:20])
    (tmp_path / "folder.wav").mkdir()
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "not audio": (tmp_path / "text.wav", "not an audio file"),
        "empty": (tmp_path / "empty.wav", "contains no audio"),
        "truncated": (tmp_path / "truncated.wav", "not an audio file"),
        "directory": (tmp_path / "folder.wav", "is a directory"),
    }


@pytest.mark.parametrize("case", ["missing", "not audio", "empty", "truncated", "directory"])
def test_bad_files_fail_at_open_with_one_clear_line(tmp_path, case):
    path, message = make_bad_inputs(tmp_path)[case]
    with pytest.raises(AudioError) as raised:
        WavReplaySource(path)
    text = str(raised.value)
    assert message in text and str(path) in text and "\n" not in text



@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100])
def test_chunks_are_never_shorter_than_asked(rate):
    from captioner.audio.pcm import chunk_bytes

    assert chunk_bytes(rate, 50) / 2 / rate >= 0.05
    assert chunk_bytes(rate, 50) / 2 / rate < 0.05 + 1 / rate
