"""Moonshine tiny (English), the default recognizer: accurate, model inside its wheel.

`moonshine-voice==0.1.0` is pinned: later releases no longer carry the weights and
download them, which fails offline. Each worker thread gets its own model instance
(one instance shared between threads returns garbage) with Moonshine's own voice
detector off (`vad_threshold=0`): the server has already cut the turn, and the inner
detector both hallucinates "You" on padding and is not safe across instances.
Measured on the fixtures: CPU real-time factor about 0.09 per final decode, ~100 MB
per instance.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from captioner import RecognizerUnavailable, Transcription, hookimpl

NAME = "moonshine"
INSTALL_HINT = "pip install moonshine-voice==0.1.0 (0.1.0 is the release that ships the tiny English model)"


@hookimpl
def register_recognizers(register):
    register(NAME, MoonshineRecognizer, "Moonshine tiny English: accurate, offline (default)")


class MoonshineRecognizer:
    name = NAME
    punctuates = True

    def __init__(self, config: object = None):
        # One ONNX Runtime thread per decode: measured, two single-threaded decoders on
        # two cores nearly double throughput, while a multi-threaded one gains nothing
        # from a second decoder. Read by the library when it creates its sessions.
        os.environ.setdefault("MOONSHINE_ORT_SINGLE_THREAD", "1")
        try:
            import moonshine_voice
            from moonshine_voice import ModelArch, get_model_path
        except ImportError:
            raise RecognizerUnavailable(f"the moonshine recognizer needs its package: {INSTALL_HINT}") from None
        self._path = get_model_path("tiny-en")
        if not (self._path / "encoder_model.ort").is_file():
            version = getattr(moonshine_voice, "__version__", "?")
            raise RecognizerUnavailable(
                f"moonshine-voice {version} has no tiny English model inside it: {INSTALL_HINT}"
            )
        self._arch = ModelArch.TINY
        self.new_decoder().close()  # fail now, at start, if the model does not load

    def new_decoder(self) -> MoonshineDecoder:
        return MoonshineDecoder(self._path, self._arch)


class MoonshineDecoder:
    def __init__(self, path, arch):
        from moonshine_voice import Transcriber
        from moonshine_voice.moonshine_api import TranscriptC

        self._transcriber = Transcriber(str(path), model_arch=arch, options={"vad_threshold": "0"})
        self._transcript_type = TranscriptC

    def transcribe(self, audio: np.ndarray) -> Transcription:
        if len(audio) < 1600:  # under 0.1 s: nothing to hear, and the model guesses
            return Transcription("")
        from moonshine_voice.errors import check_error

        samples = np.ascontiguousarray(audio, dtype=np.float32) / 32768.0
        out = ctypes.POINTER(self._transcript_type)()
        transcriber = self._transcriber
        # The library's public method first copies the samples into a ctypes array
        # element by element, holding the GIL for ~30 ms per 5 s of audio; handing it
        # numpy's buffer instead keeps the event loop and the other sessions running.
        check_error(
            transcriber._lib.moonshine_transcribe_without_streaming(
                transcriber._handle,
                samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                len(samples),
                16000,
                0,
                ctypes.byref(out),
            )
        )
        lines = transcriber._parse_transcript(out).lines
        return Transcription(" ".join(line.text.strip() for line in lines if line.text.strip()))

    def close(self) -> None:
        self._transcriber.close()
