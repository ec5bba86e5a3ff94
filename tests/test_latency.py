"""What the embedded server does to keep captions up with speech, checked as behaviour:
partials decode a bounded window and still grow, a speculative final that speech
interrupts is thrown away, a final is the turn's one-shot decode, and a starved CPU
budget delays partials, never finals. How fast it is lives in `make bench`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import jiwer
import numpy as np
import pytest
import soundfile

from captioner import SessionParams
from captioner.default_plugins.moonshine import MoonshineRecognizer
from captioner.server.decoding import DecodePool
from captioner.server.recognizer import Transcription
from captioner.server.transcriber import RecognitionSettings, RecognizerTranscriber
from captioner.testing import TranscriptScript
from conftest import fixture

RATE = 16000


@dataclass
class Counting:
    """A recognizer that does not stream and writes what it was given: "<samples> samples"."""

    punctuates: bool = False
    name: str = "counting"
    decoded: list[np.ndarray] = field(default_factory=list)

    def new_decoder(self):
        return self

    def transcribe(self, audio: np.ndarray) -> Transcription:
        self.decoded.append(audio.copy())
        return Transcription(f"{len(audio)} samples" + ("." if self.punctuates else ""))



def meeting() -> np.ndarray:
    samples, rate = soundfile.read(fixture("meeting.wav"), dtype="int16")
    assert rate == RATE
    # A little dither makes every stretch of the audio unique, so a decode's audio can be
    # found in it; the voice detector does not notice one bit of noise.
    return samples + np.random.default_rng(1).integers(-1, 2, len(samples)).astype(np.int16)


def transcribe(recognizer, samples: np.ndarray, settings=RecognitionSettings(), params=SessionParams()):
    """Stream `samples` through one session in 50 ms chunks; every update it emits, and
    the session."""

    async def run():
        updates = []
        pool = DecodePool(recognizer, workers=1)
        transcriber = RecognizerTranscriber(params, updates.append, pool, settings)
        try:
            pcm = samples.astype("<i2").tobytes()
            for start in range(0, len(pcm), 1600):
                await transcriber.accept(pcm[start : start + 1600])
                await asyncio.sleep(0.002)  # time for the lane to take a partial now and then
            await transcriber.finish()
        finally:
            pool.close()
        return updates, transcriber

    return asyncio.run(run())


def test_partials_decode_a_bounded_window_and_still_grow():
    recognizer, samples = Counting(), meeting()
    every_400_ms = RecognitionSettings(partial_interval_ms=400, partial_window_ms=1000, partial_cpu_share=1.0)
    updates, _ = transcribe(recognizer, samples, every_400_ms)

    times_decoded = np.zeros(len(samples), dtype=int)
    haystack = samples.tobytes()
    for audio in recognizer.decoded:
        at = haystack.find(audio[:400].tobytes())
        assert at >= 0 and at % 2 == 0 and haystack.find(audio[:400].tobytes(), at + 1) == -1
        times_decoded[at // 2 : at // 2 + len(audio)] += 1
    # A sample is in the windows of at most 1000/400 + 1 partials, and in its turn's final.
    assert times_decoded.max() <= 5
    finals = [u for u in updates if u.end_of_turn]
    assert len(finals) == len(TranscriptScript.load(fixture("meeting.json")).turns)
    longest = max(finals, key=lambda final: int(final.words[0].text))
    partials = [u for u in updates if not u.end_of_turn and u.turn_order == longest.turn_order]
    assert len(partials) >= 7, "a 5 s turn, a partial every 0.4 s: without a window, its first second would be decoded 7 times"
    counts = [len(p.words) for p in partials]
    assert counts == sorted(counts) and counts[-1] > counts[0]  # the words before the window are kept


def test_a_speculative_final_that_speech_interrupts_is_never_published():
    samples = meeting()
    # The first two turns of the meeting, 400 ms apart: a pause long enough to start the
    # final's decode, shorter than the 700 ms of silence this session asks for.
    first_end, second_start = 3740 * RATE // 1000, 4640 * RATE // 1000
    gap = 400 * RATE // 1000
    joined = np.concatenate([samples[: first_end + gap // 2], samples[second_start - gap // 2 : 9650 * RATE // 1000],
                             np.zeros(2 * RATE, dtype=np.int16)])
    recognizer = Counting(punctuates=True)  # its text ends a sentence: a turn it decodes may end
    updates, transcriber = transcribe(recognizer, joined, params=SessionParams(min_turn_silence=700))

    assert transcriber.speculation.dropped >= 1, "the pause must have started a decode that speech then made wrong"
    (final,) = [u for u in updates if u.end_of_turn]
    assert int(final.words[0].text) >= len(joined) - 2 * RATE - 400 * RATE // 1000  # both sentences, one final


def plain_words(text: str) -> list[str]:
    return jiwer.RemovePunctuation()(text.lower()).split()


@pytest.fixture(scope="module")
def one_shot():
    """Each scripted turn of the meeting decoded once, whole, with its pre- and postroll."""
    samples, _ = soundfile.read(fixture("meeting.wav"), dtype="int16")
    decoder = MoonshineRecognizer().new_decoder()
    turns = TranscriptScript.load(fixture("meeting.json")).turns
    return [(turn, plain_words(decoder.transcribe(samples[(turn.start - 240) * 16 : (turn.end + 240) * 16]).text))
            for turn in turns]


@pytest.mark.parametrize("settings", [RecognitionSettings(), RecognitionSettings(partial_cpu_share=0.0005)],
                         ids=["default", "starved-cpu-budget"])
def test_each_turn_gets_one_final_with_the_words_of_a_one_shot_decode(one_shot, settings):
    samples, _ = soundfile.read(fixture("meeting.wav"), dtype="int16")
    updates, _ = transcribe(MoonshineRecognizer(), samples, settings)
    finals = [u for u in updates if u.end_of_turn]
    assert len(finals) == len(one_shot)
    for final, (turn, words) in zip(finals, one_shot):
        assert abs(final.words[0].start - turn.start) < 500
        distance = jiwer.process_words(" ".join(words), final.transcript).wer * len(words)
        assert distance <= 2, (final.transcript, words)
