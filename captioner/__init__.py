"""captioner: live meeting captions from a streaming speech-to-text service, with plugins.

This module is the public API: everything a plugin, a recognizer plugin or a plugin's
tests need is importable from here (and test helpers from `captioner.testing`). The
modules behind it (`captioner.client`, `captioner.server`, ...) are internal and may
change without notice, as pluggy's and httpx's private modules do; captioner's own
first-party plugins use nothing else, and a test holds them to it.
"""

from .client.settings import Secret, Settings
from .config import Config
from .errors import (
    AudioError,
    AuthError,
    CaptionerError,
    ConnectionFailed,
    MessageTooBig,
    NoTermination,
    NotAStreamingServer,
    ServerError,
    UsageError,
)
from .events import AudioLevel, CaptionError, MeetingSummary, Session, Translation, Turn, Word
from .hookspecs import hookimpl, hookspec
from .outputs import OutputFiles, OutputPath
from .plugins.hooks import Registration, collect_registrations
from .plugins.meeting import Meeting
from .protocol.messages import SessionParams
from .server.decoding import default_decode_workers
from .server.recognizer import (
    SAMPLE_RATE,
    Decoder,
    RecognizedWord,
    Recognizer,
    RecognizerUnavailable,
    Transcription,
)
from .urls import is_loopback_host

__version__ = "0.1.0"

__all__ = [
    # Writing a plugin: hooks and what they receive
    "hookimpl",
    "hookspec",
    "Config",
    "Meeting",
    "Settings",
    "SessionParams",
    "Secret",
    "OutputFiles",
    "OutputPath",
    "Registration",
    "collect_registrations",
    "is_loopback_host",
    # Events
    "AudioLevel",
    "CaptionError",
    "MeetingSummary",
    "Session",
    "Translation",
    "Turn",
    "Word",
    # Recognizer plugins
    "SAMPLE_RATE",
    "Decoder",
    "RecognizedWord",
    "Recognizer",
    "RecognizerUnavailable",
    "Transcription",
    "default_decode_workers",
    # Errors
    "CaptionerError",
    "UsageError",
    "AudioError",
    "AuthError",
    "ConnectionFailed",
    "NoTermination",
    "ServerError",
    "NotAStreamingServer",
    "MessageTooBig",
]
