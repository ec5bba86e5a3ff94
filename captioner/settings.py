"""What a captioning run needs to know, and where secrets come from.

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

from .audio.pcm import DEFAULT_CHUNK_MS, DEFAULT_SAMPLE_RATE
from .errors import UsageError
from .outputs import OutputFiles
from .protocol import codec, v3
from .protocol.messages import SessionParams
from .client.reconnect import ReconnectPolicy
from .client.session import SessionTimeouts

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
    url: str = v3.DEFAULT_URL
    backend: str = ""  # said in the status line: "AssemblyAI", "the embedded moonshine recognizer ..."
    credential_is_token: bool = False  # a temporary token (captioner token) rather than the API key
    protocol: str = v3.NAME
    credential: Secret | None = None
    sample_rate: int = DEFAULT_SAMPLE_RATE
    chunk_ms: int = DEFAULT_CHUNK_MS
    format_turns: bool = False
    speaker_labels: bool = False
    min_turn_silence: int | None = None
    max_turn_silence: int | None = None
    timeouts: SessionTimeouts = field(default_factory=SessionTimeouts)
    plugin_drain_timeout: float = 10.0  # how long plugins may take to finish after the end
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    resend_seconds: float = 60.0  # audio kept for resending after a drop (and held through an outage)

    keyterms: tuple[str, ...] = ()
    language: str | None = None  # e.g. "es": v3 language_codes
    speech_model: str | None = None  # e.g. "universal-streaming-multilingual"
    # Live changes (UpdateConfiguration) without a field of their own, e.g. prompt or
    # language_codes: a reconnect asks for them again in the query.
    updated: dict = field(default_factory=dict, hash=False)

    def with_update(self, params: Mapping) -> Settings:
        """These settings after a live UpdateConfiguration, so that the sessions a reconnect
        starts ask for the same: what the protocol can change live (v2: only the silence)."""
        live = codec(self.protocol).UPDATABLE
        fields: dict = {}
        updated = dict(self.updated)
        for key, value in params.items():
            if key == "min_end_of_turn_silence_when_confident":
                key = "min_turn_silence"  # the old name of the same setting
            if key not in live:
                continue
            if key in ("min_turn_silence", "max_turn_silence", "format_turns"):
                fields[key] = value
            elif key == "keyterms_prompt":
                fields["keyterms"] = tuple(value)
            else:
                updated[key] = value
        return replace(self, **fields, updated=updated)

    def session_params(self) -> SessionParams:
        extra: dict = {}
        if self.language:
            extra["language_codes"] = [self.language]
        if self.speech_model:
            extra["speech_model"] = self.speech_model
        extra.update(self.updated)
        return SessionParams(
            sample_rate=self.sample_rate,
            format_turns=self.format_turns,
            speaker_labels=self.speaker_labels,
            min_turn_silence=self.min_turn_silence,
            max_turn_silence=self.max_turn_silence,
            keyterms_prompt=self.keyterms,
            extra=extra,
        )

    def new_session(self):
        """A StreamingSession with these settings. A v2 temporary token travels in the
        query (?token=), as the legacy service wants; everything else in Authorization."""
        from .client.session import StreamingSession

        protocol = codec(self.protocol)
        params = self.session_params()
        credential = self.credential.reveal() if self.credential else None
        if credential and self.credential_is_token and protocol.NAME == "v2":
            params = replace(params, extra={**params.extra, "token": credential})
            credential = None
        return StreamingSession(protocol, self.url, params, credential, self.timeouts)


@dataclass(frozen=True)
class Config:
    """What the `configure` hook receives: the command and every parsed option.

    Plugins read their own options with `config.option("srt")`. `plugin_manager` lets a
    plugin register a stateful object for the run, as pytest's terminal reporter does.
    """

    command: str
    options: Mapping[str, object]
    plugin_manager: object = None
    settings: Settings | None = None
    events: object = None  # an EventBus: emit on_translation, report errors, during the session
    outputs: OutputFiles = field(default_factory=OutputFiles)  # open output files through it

    def option(self, name: str, default: object = None) -> object:
        return self.options.get(name.lstrip("-").replace("-", "_"), default)
