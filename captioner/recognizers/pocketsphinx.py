"""PocketSphinx (CMU Sphinx en-us): the light recognizer, and the voice detector.

Much lighter than Moonshine (about 115 MB, CPU real-time factor ~0.2) and faster, but
far less accurate, and it writes no punctuation. Its decoder holds the GIL while it
works, so audio is fed in short pieces to let the event loop run in between. It gives
word times of its own.
"""

from __future__ import annotations

import re

import numpy as np

from ..hookspecs import hookimpl
from . import RecognizedWord, RecognizerUnavailable, Transcription

NAME = "pocketsphinx"
INSTALL_HINT = "pip install pocketsphinx==5.1.1 (its wheel carries the en-us model)"
FEED_SAMPLES = 1600  # 0.1 s per call: about 20 ms of work, then the GIL is free again


@hookimpl
def register_recognizers(register):
    register(NAME, PocketSphinxRecognizer, "PocketSphinx en-us: light and fast, less accurate")


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError:
        raise RecognizerUnavailable(f"the pocketsphinx recognizer needs its package: {INSTALL_HINT}") from None
    return pocketsphinx


class PocketSphinxRecognizer:
    name = NAME
    punctuates = False

    def __init__(self, config: object = None):
        _pocketsphinx()
        self.new_decoder()  # fail now, at start, if the model does not load

    def new_decoder(self) -> PocketSphinxDecoder:
        return PocketSphinxDecoder()


class PocketSphinxDecoder:
    def __init__(self):
        self._decoder = _pocketsphinx().Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, audio: np.ndarray) -> Transcription:
        if len(audio) < 1600:
            return Transcription("")
        decoder = self._decoder
        pcm = np.ascontiguousarray(audio, dtype="<i2")
        decoder.start_utt()
        for start in range(0, len(pcm), FEED_SAMPLES):
            decoder.process_raw(pcm[start : start + FEED_SAMPLES].tobytes())
        decoder.end_utt()
        words = tuple(
            RecognizedWord(
                re.sub(r"\(\d+\)$", "", segment.word),
                segment.start_frame / 100,
                (segment.end_frame + 1) / 100,
                confidence=min(1.0, max(0.0, float(decoder.get_logmath().exp(segment.prob)))),
            )
            for segment in (decoder.seg() or ())
            if not segment.word.startswith(("<", "["))
        )
        return Transcription(" ".join(word.text for word in words), words)


SILENCE_PEAK = 64  # of 32768


class VoiceDetector:
    """Speech or not, per 30 ms frame of 16 kHz audio; ~0.003 ms a frame."""

    FRAME_SAMPLES = 480

    def __init__(self, mode: int = 0):
        self._vad = _pocketsphinx().Vad(mode=mode, sample_rate=16000, frame_length=0.03)
        assert self._vad.frame_bytes == self.FRAME_SAMPLES * 2

    def is_speech(self, frame: bytes) -> bool:
        # Below -54 dBFS is silence whatever the detector says: measured, after speech
        # it kept answering "speech" for a second of digital silence (zeros).
        if np.abs(np.frombuffer(frame, dtype="<i2")).max(initial=0) < SILENCE_PEAK:
            return False
        return bool(self._vad.is_speech(frame))
