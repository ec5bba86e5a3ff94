"""Every sample format libsndfile reads reaches the recognizer at the right level: a float
WAV (what most audio and ML tools write) is captioned like the 16-bit original."""

from __future__ import annotations

import re

import jiwer
import numpy as np
import pytest
import soundfile
import soxr

from captioner.server.embedded import EmbeddedServer
from captioner.default_plugins.moonshine import MoonshineRecognizer
from captioner.testing import ServerThread
from conftest import fixture

REFERENCE = fixture("hello.txt").read_text()


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def moonshine():
    with ServerThread(EmbeddedServer(MoonshineRecognizer())) as server:
        yield server


def speech() -> tuple[np.ndarray, int]:
    return soundfile.read(fixture("hello.wav"), dtype="float64")


@pytest.mark.parametrize("subtype, extension", [
    ("PCM_16", "wav"), ("PCM_32", "wav"), ("FLOAT", "wav"), ("DOUBLE", "wav"), ("PCM_24", "wav"),
    ("ULAW", "wav"), ("ALAW", "wav"), ("PCM_U8", "wav"), ("PCM_24", "flac"),
])
def test_every_sample_format_is_captioned_with_the_right_words(tmp_path, moonshine, replay, subtype, extension):
    audio, rate = speech()
    path = tmp_path / f"hello-{subtype.lower()}.{extension}"
    soundfile.write(path, audio, rate, subtype=subtype)
    result = replay(path, server=moonshine)
    assert result.error is None, result.error
    heard = " ".join(result.final_texts)
    assert jiwer.wer(words(REFERENCE), words(heard) or "-") <= 0.1, heard


def test_float_stereo_at_another_rate_is_captioned(tmp_path, moonshine, replay):
    audio, rate = speech()
    stereo = soxr.resample(np.stack([audio, audio * 0.5], axis=1), rate, 44100)
    path = tmp_path / "hello-44k-stereo.wav"
    soundfile.write(path, stereo, 44100, subtype="FLOAT")
    result = replay(path, server=moonshine)
    assert jiwer.wer(words(REFERENCE), words(" ".join(result.final_texts)) or "-") <= 0.1


def test_not_a_number_samples_are_cleaned_with_one_warning(tmp_path, moonshine, cli):
    audio, rate = speech()
    audio = audio.copy()
    audio[100:200] = np.nan  # in the leading silence: the words survive
    audio[300:310] = np.inf
    audio[-400:-300] = -np.inf
    path = tmp_path / "hello-nan.wav"
    soundfile.write(path, audio.astype(np.float32), rate, subtype="FLOAT")
    run = cli("replay", str(path), "--url", moonshine.url, "--fast")
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "not numbers" in line]
    assert len(warnings) == 1, run.stderr
    assert "RuntimeWarning" not in run.stderr and "invalid value" not in run.stderr
    assert jiwer.wer(words(REFERENCE), words(run.stdout) or "-") <= 0.1, run.stdout
