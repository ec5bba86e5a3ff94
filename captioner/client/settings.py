"""What the client needs to know to caption a meeting, and where secrets come from.

`Settings` says how to reach the service (URL, protocol, credential) and what to ask of
it: the session parameters themselves (`SessionParams`, the protocol's own type, held
here rather than mirrored), plus the client's own timeouts and reconnect policy.
Precedence: command-line flags, then environment variables, then defaults. The API key
is read only from the environment or a `.env` file in the working directory, and is
held in a `Secret` so that no repr, log line or error message can show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

from ..audio.pcm import DEFAULT_CHUNK_MS
from ..errors import UsageError
from ..protocol import codec, v3
from ..protocol.messages import SessionParams
from .reconnect import ReconnectPolicy
from .session import SessionTimeouts, StreamingSession
from ..urls import redact_url

API_KEY_VARIABLE = "ASSEMBLYAI_API_KEY"


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def find_api_key(environ: Mapping[str, str] = os.environ, env_file: Path = Path(".env")) -> Secret | None:
    value = environ.get(API_KEY_VARIABLE)
    if not value and env_file.is_file():
        try:
            value = dotenv_values(env_file).get(API_KEY_VARIABLE)
        except (UnicodeDecodeError, OSError) as error:
            raise UsageError(f"{env_file}: cannot read it ({type(error).__name__}); it must be UTF-8 text") from None
    return Secret(value.strip()) if value and value.strip() else None


@dataclass(frozen=True)
class Settings:
    """How to reach the streaming service, what to ask of it, and how the client behaves."""

    url: str = v3.DEFAULT_URL
    backend: str = ""  # said in the status line: "AssemblyAI", "the embedded moonshine recognizer ..."
    protocol: str = v3.NAME
    credential: Secret | None = None
    credential_is_token: bool = False  # a temporary token (captioner token) rather than the API key
    session: SessionParams = field(default_factory=SessionParams)  # what each session asks for
    chunk_ms: int = DEFAULT_CHUNK_MS
    timeouts: SessionTimeouts = field(default_factory=SessionTimeouts)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    resend_seconds: float = 60.0  # audio kept for resending after a drop (and held through an outage)
    plugin_drain_timeout: float = 10.0  # how long plugins may take to finish after the end
    # What people see for each channel when there are two (--mic-label, --meeting-label).
    channel_labels: Mapping[str, str] = field(default_factory=lambda: {"mic": "You", "meeting": "Meeting"})

    @property
    def sample_rate(self) -> int:
        return self.session.sample_rate

    def __repr__(self) -> str:
        return (f"Settings(url={redact_url(self.url)!r}, protocol={self.protocol!r}, credential={self.credential!r}, "
                f"session={self.session!r})")

    def with_update(self, update: Mapping) -> Settings:
        """These settings after a live UpdateConfiguration, so that the sessions a reconnect
        starts ask for the same (the protocol's codec says what it can change live)."""
        return replace(self, session=codec(self.protocol).updated(self.session, update))

    def new_session(self) -> StreamingSession:
        credential = self.credential.reveal() if self.credential else None
        return StreamingSession(codec(self.protocol), self.url, self.session, credential,
                                credential_is_token=self.credential_is_token, timeouts=self.timeouts)
