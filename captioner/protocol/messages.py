"""Typed messages exchanged with a streaming service, whatever the wire protocol.

Codecs (`captioner.protocol.v3`, later others) turn frames into these and back. The
session and the servers only deal in these types, so a new protocol is a new codec
module, not edits across the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

# Server to client.


@dataclass(frozen=True)
class Begin:
    session_id: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class WireWord:
    text: str
    start: int  # ms on the session's clock
    end: int
    confidence: float = 1.0
    is_final: bool = True
    speaker: str | None = None


@dataclass(frozen=True)
class TurnUpdate:
    """A partial (`end_of_turn` false) or final turn as the service sent it."""

    turn_order: int
    transcript: str
    words: tuple[WireWord, ...]
    end_of_turn: bool
    is_formatted: bool = False
    end_of_turn_confidence: float = 0.0
    speaker: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Termination:
    audio_duration_seconds: int | None = None
    session_duration_seconds: int | None = None


@dataclass(frozen=True)
class ServerErrorMessage:
    message: str
    code: int | None = None


@dataclass(frozen=True)
class ServerWarning:
    message: str
    code: int | None = None


@dataclass(frozen=True)
class Ignored:
    """A well-formed message the client has no use for (SpeechStarted, Heartbeat, ...)."""

    type: str


ServerMessage = Union[Begin, TurnUpdate, Termination, ServerErrorMessage, ServerWarning, Ignored]


# Client to server.


@dataclass(frozen=True)
class Audio:
    pcm: bytes


@dataclass(frozen=True)
class Terminate:
    pass


@dataclass(frozen=True)
class ForceEndpoint:
    pass


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class UpdateConfiguration:
    params: dict = field(default_factory=dict)


ClientMessage = Union[Audio, Terminate, ForceEndpoint, KeepAlive, UpdateConfiguration]


DEFAULT_SAMPLE_RATE = 16000  # what AssemblyAI recommends, and what the offline recognizers hear


@dataclass(frozen=True)
class SessionParams:
    """The session settings a client asks for in the connection's query string."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    encoding: str = "pcm_s16le"
    format_turns: bool = False
    min_turn_silence: int | None = None  # ms
    max_turn_silence: int | None = None  # ms
    speaker_labels: bool = False
    keyterms_prompt: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # parameters this code does not interpret
