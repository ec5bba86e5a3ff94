"""Whisper through faster-whisper (CTranslate2) as an offline recognizer for captioner.

    captioner serve --recognizer faster-whisper --whisper-model DIR
    captioner replay meeting.wav --offline --recognizer faster-whisper --whisper-model DIR

Contributed through the public `register_recognizers` hook: the server cuts turns and
asks this recognizer to transcribe them. Options are prefixed `--whisper-` because
`captioner run` already has `--device` (the microphone) and plugins must not clash with
the core's options. Nothing here imports faster-whisper until the recognizer is chosen,
so having the plugin installed costs the other commands nothing.
"""

from __future__ import annotations

import argparse

from captioner import hookimpl

COMMANDS = ("serve", "replay", "run")  # those that start the embedded recognizer server


@hookimpl
def register_recognizers(register):
    from .recognizer import NAME, WhisperRecognizer

    register(NAME, WhisperRecognizer, "Whisper via faster-whisper: a CTranslate2 model directory (--whisper-model)")


@hookimpl
def add_options(parser, command):
    if command not in COMMANDS:
        return
    parser.add_argument("--whisper-model", metavar="DIR",
                        help="with --recognizer faster-whisper: a CTranslate2 Whisper model directory "
                        "(never a model name: nothing is downloaded)")
    parser.add_argument("--whisper-device", choices=("cpu", "cuda"), default="cpu",
                        help="run Whisper on the CPU (default) or a CUDA GPU")
    parser.add_argument("--whisper-compute-type", metavar="TYPE",
                        help="CTranslate2 compute type, e.g. int8, float32, float16 (default: int8 on cpu, "
                        "the model's own on cuda)")
    parser.add_argument("--whisper-beam-size", type=_positive_int, default=1, metavar="N",
                        help="beam width (default 1, greedy: as accurate on the fixtures, and cheaper)")
    parser.add_argument("--whisper-language", metavar="CODE",
                        help="the spoken language, e.g. en (default: en for .en models, else detected per turn)")
    parser.add_argument("--whisper-threads", type=_positive_int, metavar="N",
                        help="CPU threads per decoding worker (default: the cores divided by --decode-workers)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value
