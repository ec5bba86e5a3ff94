"""captioner: live meeting captions from a streaming speech-to-text service, with plugins."""

from .errors import CaptionerError, UsageError
from .events import CaptionError, Session, SessionSummary, Turn, Word
from .hookspecs import hookimpl
from .outputs import OutputFiles, OutputPath

__version__ = "0.1.0"

__all__ = [
    "CaptionError",
    "CaptionerError",
    "OutputFiles",
    "OutputPath",
    "Session",
    "SessionSummary",
    "Turn",
    "UsageError",
    "Word",
    "hookimpl",
]
