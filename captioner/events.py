"""What plugins receive: frozen dataclasses, never raw protocol JSON.

All times a plugin sees are on the *meeting clock*: milliseconds of audio since the
meeting started, the same clock for every channel (the microphone, "mic", and what the
computer plays, "meeting"). A streaming session has its own clock starting at zero; the engine
adds the session's offset so that times stay monotonic when one meeting spans several
sessions (a reconnect, or a service session that reached its maximum duration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Session:
    """A streaming session the service has begun (its `Begin` message)."""

    id: str
    protocol: str  # "v3"
    url: str  # the server URL with any secret (token, password) removed
    sample_rate: int
    started_at: datetime
    expires_at: datetime | None = None
    offset_ms: int = 0  # where this session's clock starts on the meeting clock
    source: str = ""  # what is being captioned, e.g. "meeting.wav (44100 Hz, 2 ch, ...)"
    backend: str = ""  # who transcribes, e.g. "AssemblyAI" or "the embedded moonshine recognizer ..."
    channel: str = "mic"  # whose audio: "mic" (the microphone, or a replayed file) or "meeting"


@dataclass(frozen=True)
class Word:
    text: str
    start_ms: int  # meeting clock
    end_ms: int  # meeting clock
    confidence: float
    is_final: bool = True
    speaker: str | None = None


@dataclass(frozen=True)
class Turn:
    """A transcript turn: a partial (still changing) or a final (settled).

    `text` is what the service reported as the turn's transcript. In a partial it holds
    only the words the service has settled; `display_text` also shows the word still
    being recognised, which is what a live view wants.
    """

    session_id: str
    turn_order: int
    text: str
    words: tuple[Word, ...]
    is_final: bool
    is_formatted: bool
    start_ms: int | None  # meeting clock; None when the service sent no words
    end_ms: int | None
    speaker: str | None = None  # the service's speaker label within the channel ("A")
    language: str | None = None
    channel: str = "mic"  # "mic" (the microphone, or a replayed file) or "meeting" (what the computer plays)
    label: str | None = None  # who spoke, as shown: "You", "Meeting A"; None when there is nothing to tell apart

    @property
    def display_text(self) -> str:
        if self.is_final or not self.words:
            return self.text
        return " ".join(word.text for word in self.words)


@dataclass(frozen=True)
class Translation:
    """A final turn in another language. `turn` is the original, with its times and words."""

    turn: Turn
    language: str  # the target language code, e.g. "es"
    text: str
    backend: str = ""  # which translator produced it


@dataclass(frozen=True)
class CaptionError:
    """Something went wrong. Fatal errors end the session; the rest are reported and survived.

    `kind` is one of: "auth", "connection", "server", "protocol", "audio", "plugin",
    "usage". `plugin` names the plugin that raised, for kind "plugin".
    """

    kind: str
    message: str
    fatal: bool
    plugin: str | None = None
    code: int | None = None  # a WebSocket close code or server error code, when there is one


@dataclass(frozen=True)
class AudioLevel:
    """How loud the audio being sent is, about five times a second: a live input meter."""

    at_ms: int  # meeting clock, end of the measured stretch
    rms_dbfs: float  # -120 for digital silence; speech into a good microphone is around -30 to -15
    peak_dbfs: float  # 0 means clipping
    paused: bool = False  # the source sends silence on purpose (the user paused)
    channel: str = "mic"  # "mic" or "meeting"


@dataclass(frozen=True)
class MeetingSummary:
    """Sent once when captioning ends, whether it ended well or not."""

    session_ids: tuple[str, ...]
    audio_seconds_sent: float  # resent audio counted again
    partials: int
    finals: int
    errors: tuple[CaptionError, ...] = field(default=())  # the first 100, and every fatal one
    error_count: int = 0
    terminated: bool = False  # the service confirmed the end (`Termination`), for every channel
    reconnects: int = 0  # sessions that dropped and were resumed
    audio_seconds_lost: float = 0.0  # dropped during an outage longer than the resend buffer
    server_audio_seconds: int | None = None  # the service's own count, from `Termination` (channels added up)

    @property
    def ok(self) -> bool:
        return self.terminated and not any(error.fatal for error in self.errors)
