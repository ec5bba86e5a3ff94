"""Offline recognizers behind the streaming protocol, contributed by plugins.

A plugin implements `register_recognizers(register)` and calls
`register(name, factory, description)`. When a server starts with `--recognizer NAME`,
`factory(config)` loads the model once and returns a `Recognizer`. The server cuts the
audio into turns itself (captioner.server.endpointing) and asks the recognizer
only to transcribe finished stretches of audio, from worker threads, each with its own
`Decoder`. So a recognizer need not stream: Whisper-like models work as they are; one
that can stream may implement `transcribe_partial` (see `Decoder`).

Nothing downloads at run time: a recognizer whose package or model is missing raises
`RecognizerUnavailable` with one line saying what to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..errors import UsageError
from ..plugins.hooks import PluginHooks, Registration

SAMPLE_RATE = 16000  # what every recognizer here is fed
DEFAULT_RECOGNIZER = "moonshine"


class RecognizerUnavailable(UsageError):
    """The recognizer's package or model is not installed, or cannot work here."""


@dataclass(frozen=True)
class RecognizedWord:
    text: str
    start: float  # seconds from the start of the transcribed audio
    end: float
    confidence: float = 1.0


@dataclass(frozen=True)
class Transcription:
    text: str
    words: tuple[RecognizedWord, ...] | None = None  # None: the server estimates word times


class Decoder(Protocol):
    def transcribe(self, audio: np.ndarray) -> Transcription:
        """Transcribe 16 kHz mono int16 samples. Called from one worker thread at a time;
        it should release the GIL while it computes, or work in short stretches."""

    # Optional: `transcribe_partial(audio)` for a turn still in progress. Successive
    # partials of a turn, then its final, start at the same sample, so a streaming
    # decoder can go on where it left off (PocketSphinx does); without it, partials
    # call transcribe().


class Recognizer(Protocol):
    name: str
    punctuates: bool  # whether its text ends sentences with . ? ! (used to judge turn ends)

    def new_decoder(self) -> Decoder:
        """A decoder for one worker thread; decoders are never shared between threads."""


RecognizerFactory = Callable[[object], Recognizer]


def registered_recognizers(hooks: PluginHooks) -> dict[str, Registration]:
    return hooks.registrations("register_recognizers", "recognizer")


def recognizer_registration(hooks: PluginHooks, name: str) -> Registration:
    entries = registered_recognizers(hooks)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise UsageError(f"unknown recognizer {name!r}; installed: {known}")
    return entries[name]


def load_recognizer(hooks: PluginHooks, name: str, config: object) -> Recognizer:
    registration = recognizer_registration(hooks, name)
    try:
        return registration.factory(config)
    except UsageError:
        raise
    except Exception as error:
        raise RecognizerUnavailable(f"recognizer {name} failed to load: {type(error).__name__}: {error}") from None
