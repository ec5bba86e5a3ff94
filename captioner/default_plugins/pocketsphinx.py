"""PocketSphinx (CMU Sphinx en-us): the light recognizer, a default plugin.

Lighter than Moonshine and quicker to finalize, but far less accurate, and it writes
no punctuation (measured side by side in BENCHMARKS.md). Its decoder holds the GIL while it
works, so audio is fed in short pieces to let the event loop run in between. It gives
word times of its own.
"""

from __future__ import annotations

import contextlib
import re
import threading

import numpy as np

from captioner import RecognizedWord, RecognizerUnavailable, Transcription, hookimpl

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
    """Decodes a turn in progress as it grows, each sample once, as PocketSphinx is meant
    to be used live: a decoder keeps the turn's utterance open between partials, and the
    final only feeds the rest. Re-decoding the turn from its start for every partial cost
    0.3 CPU s per second of audio already heard, so partials grew dearer as a turn went on.

    A decoder holds its own copy of the model (about 90 MB), so there are only as many
    as decodes ever ran at once (the worker threads); a decode takes the idle one whose
    open utterance it continues, which keeps a session on one decoder while another
    session uses the other.
    """

    name = NAME
    punctuates = False

    def __init__(self, config: object = None):
        _pocketsphinx()
        self._lock = threading.Lock()
        self._idle = [OpenUtterance()]  # fail now, at start, if the model does not load
        self.samples_fed = 0  # over all decodes: how much audio the decoders really processed

    def new_decoder(self) -> PocketSphinxDecoder:
        return PocketSphinxDecoder(self)

    def decode(self, audio: np.ndarray, *, final: bool) -> Transcription:
        if len(audio) < 1600:
            return Transcription("")
        pcm = np.ascontiguousarray(audio, dtype="<i2")
        with self._lock:
            chosen, fed_before = next(((u, n) for u in self._idle if (n := u.fed_of(pcm))), (None, 0))
            # Else a decoder with no utterance open, else the least recently used (idle
            # ones are appended on return), else one more: more decodes at once than before.
            chosen = chosen or next((u for u in self._idle if u.audio is None), None) or next(iter(self._idle), None)
            if chosen is None:
                chosen = OpenUtterance()
            else:
                self._idle.remove(chosen)
        fed = 0
        try:
            transcription, fed = chosen.decode(pcm, fed_before, final=final)
        finally:
            with self._lock:
                self._idle.append(chosen)
                self.samples_fed += fed
        return transcription


class PocketSphinxDecoder:
    """One worker thread's handle on the recognizer's decoders."""

    def __init__(self, recognizer: PocketSphinxRecognizer):
        self._recognizer = recognizer

    def transcribe(self, audio: np.ndarray) -> Transcription:
        return self._recognizer.decode(audio, final=True)

    def transcribe_partial(self, audio: np.ndarray) -> Transcription:
        return self._recognizer.decode(audio, final=False)


class OpenUtterance:
    """A PocketSphinx decoder and the audio of the utterance it has open, if any."""

    def __init__(self):
        # No second, flat-lexicon pass: it runs at the end of each utterance over all of
        # it (0.18 s of a 3.9 s turn's final, against 0.03 s without). Measured in one run
        # on the fixtures: meeting WER the same (5.7%), 17% less CPU; one word better on
        # `hello`, one worse on `mute`.
        self._decoder = _pocketsphinx().Decoder(samprate=16000, loglevel="FATAL", fwdflat=False)
        self.audio: np.ndarray | None = None  # fed so far; None: no utterance open

    def fed_of(self, pcm: np.ndarray) -> int:
        """How many samples the open utterance was fed, when `pcm` and they begin alike
        (the same turn, grown since, or a final ending before the last partial); else 0."""
        fed = self.audio
        if fed is None:
            return 0
        shared = min(len(fed), len(pcm))
        return len(fed) if np.array_equal(fed[:shared], pcm[:shared]) else 0

    def decode(self, pcm: np.ndarray, fed_before: int, *, final: bool) -> tuple[Transcription, int]:
        """The transcription of `pcm`, given `fed_of(pcm)`, and how many samples it fed."""
        decoder = self._decoder
        if 0 < fed_before <= len(pcm):
            start = fed_before  # the same turn, grown: feed the rest
        elif fed_before and final:
            # The final ends where speech ended; a partial in the silence after it fed a
            # little more. That tail is silence: end the utterance as it is, and keep
            # only words that start within the final's audio.
            start = len(pcm)
        else:
            if self.audio is not None:
                decoder.end_utt()  # another turn's utterance: abandoned
            decoder.start_utt()
            start = 0
        try:
            for begin in range(start, len(pcm), FEED_SAMPLES):
                decoder.process_raw(pcm[begin : begin + FEED_SAMPLES].tobytes())
        except BaseException:
            self.audio = None  # half fed: never continued, the next decode starts over
            with contextlib.suppress(RuntimeError):
                decoder.end_utt()
            raise
        self.audio = None if final else pcm
        if final:
            decoder.end_utt()
        return self._transcription(len(pcm) / 16000), len(pcm) - start

    def _transcription(self, seconds: float) -> Transcription:
        decoder = self._decoder
        words = tuple(
            RecognizedWord(
                re.sub(r"\(\d+\)$", "", segment.word),
                segment.start_frame / 100,
                min(seconds, (segment.end_frame + 1) / 100),
                confidence=min(1.0, max(0.0, float(decoder.get_logmath().exp(segment.prob)))),
            )
            for segment in (decoder.seg() or ())
            if not segment.word.startswith(("<", "[")) and segment.start_frame / 100 < seconds
        )
        return Transcription(" ".join(word.text for word in words), words)
