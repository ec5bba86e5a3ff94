"""AssemblyAI's legacy real-time v2 protocol (what the original tutorial used): a pure
codec, both directions, no I/O. The same interface as `v3`, so the engine, the plugins
and the servers do not know which one is in use.

Differences from v3 (../shared/PROTOCOL.md): audio goes as JSON text frames
`{"audio_data": "<base64 PCM>"}`; messages are dispatched on `message_type`
(`SessionBegins`, `PartialTranscript`, `FinalTranscript`, `SessionInformation`,
`SessionTerminated`); there is no turn number: the transcripts of one utterance share
its `audio_start`, which serves as the turn's order; finals are punctuated by default,
so a v2 server sends one `FinalTranscript` per utterance, the formatted one.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlunsplit

from ..errors import ProtocolError
from . import v3
from .messages import (
    Audio,
    Begin,
    ClientMessage,
    ForceEndpoint,
    Ignored,
    KeepAlive,
    ServerErrorMessage,
    ServerMessage,
    SessionParams,
    Terminate,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
)

NAME = "v2"
PATH = "/v2/realtime/ws"
DEFAULT_URL = "wss://api.assemblyai.com/v2/realtime/ws"
# What v2 can change live: the end-of-utterance silence, one setting for both.
UPDATABLE = {"min_turn_silence": int, "max_turn_silence": int}
SessionRejected = v3.SessionRejected
InvalidClientMessage = v3.InvalidClientMessage
auth_headers = v3.auth_headers  # the same handshake header


def credentials(credential: str | None, is_token: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The key goes in the Authorization header; a temporary token in `?token=`, as the
    legacy service wants it."""
    if credential and is_token:
        return {}, {"token": credential}
    return auth_headers(credential), {}


def check_update(settings: dict) -> None:
    """v2 can change only the end-of-utterance silence, one setting for both."""
    for key, value in settings.items():
        if key not in UPDATABLE:
            raise ValueError(f"{key} cannot be changed during a v2 session; only the silence can "
                             f"({', '.join(sorted(UPDATABLE))})")
        if not v3.value_fits(int, value):
            raise ValueError(f"{key} must be int, not {value!r}")


def updated(params: SessionParams, settings: dict) -> SessionParams:
    """The session settings after a live change: v2 keeps only the silence."""
    return v3.updated(params, {key: value for key, value in settings.items() if key in UPDATABLE})


# ---------------------------------------------------------------- client side


def connect_url(base_url: str, params: SessionParams) -> str:
    parts, path = v3.websocket_url_parts(base_url, PATH)
    query = dict(parse_qsl(parts.query))
    query["sample_rate"] = str(params.sample_rate)
    query["encoding"] = params.encoding
    if params.keyterms_prompt:
        query["word_boost"] = json.dumps(list(params.keyterms_prompt))
    query.update({key: str(value) for key, value in params.extra.items()})
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def encode_client(message: ClientMessage) -> bytes | str:
    if isinstance(message, Audio):
        # As the tutorial sent it: base64 PCM in JSON text. (SDKs from 0.22 send raw
        # binary frames; servers accept both.)
        return json.dumps({"audio_data": base64.b64encode(message.pcm).decode("ascii")})
    if isinstance(message, Terminate):
        return '{"terminate_session": true}'
    if isinstance(message, ForceEndpoint):
        return '{"force_end_utterance": true}'
    if isinstance(message, UpdateConfiguration):
        silence = message.params.get("max_turn_silence", message.params.get("min_turn_silence"))
        if silence is None:
            raise ProtocolError("v2 can change only the end-of-utterance silence (max_turn_silence)")
        return json.dumps({"end_utterance_silence_threshold": int(silence)})
    if isinstance(message, KeepAlive):
        raise ProtocolError("v2 has no keep-alive message")
    raise TypeError(f"not a client message: {message!r}")


def decode_server(frame: str | bytes) -> ServerMessage:
    data = v3._json_object(frame, "server")
    kind = data.get("message_type")
    if kind is None:
        if "error" in data:  # "an object with only error is an error and the session goes on"
            return ServerErrorMessage(v3._text(data, "error"))
        raise ProtocolError("message has no message_type")
    if kind in ("PartialTranscript", "FinalTranscript"):
        final = kind == "FinalTranscript"
        words = data.get("words", [])
        if not isinstance(words, list):
            raise ProtocolError("words is not a list")
        return TurnUpdate(
            turn_order=v3._int(data, "audio_start"),
            transcript=v3._text(data, "text"),
            words=tuple(v3._word(word) for word in words),  # the same word objects
            end_of_turn=final,
            is_formatted=final and bool(data.get("text_formatted", data.get("punctuated", False))),
            end_of_turn_confidence=v3._number(data, "confidence", 0.0),
        )
    if kind == "SessionBegins":
        return Begin(v3._text(data, "session_id"), v3._timestamp(data.get("expires_at")))
    if kind == "SessionTerminated":
        return Termination()
    if not isinstance(kind, str):
        raise ProtocolError(f"message_type is not a string: {v3._preview(kind)}")
    return Ignored(kind)  # SessionInformation, and anything new


# ---------------------------------------------------------------- server side


def parse_query(query: str) -> SessionParams:
    raw = dict(parse_qsl(query, keep_blank_values=True))
    raw.pop("token", None)  # checked by the server, not a setting
    sample_rate = v3.pop_sample_rate(raw)
    encoding = raw.pop("encoding", "pcm_s16le")
    if encoding not in ("pcm_s16le", "pcm_mulaw"):
        raise SessionRejected(4000, f"Invalid encoding: {v3._preview(encoding)}")
    try:
        boost = json.loads(raw.pop("word_boost", "[]"))
        if not isinstance(boost, list) or not all(isinstance(word, str) for word in boost):
            raise ValueError
    except ValueError:
        raise SessionRejected(4104, "Could not parse word boost parameter") from None
    # v2 finals are punctuated: a v2 session always gets the formatted final.
    return SessionParams(sample_rate=sample_rate, encoding=encoding, format_turns=True,
                         keyterms_prompt=tuple(boost), extra=raw)


def decode_client(frame: str | bytes) -> ClientMessage:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return Audio(bytes(frame))
    try:
        data = v3._json_object(frame, "client")
    except ProtocolError as error:
        raise InvalidClientMessage(4100, str(error)) from None
    if "audio_data" in data:
        try:
            return Audio(base64.b64decode(data["audio_data"], validate=True))
        except (binascii.Error, TypeError, ValueError):
            raise InvalidClientMessage(4101, "audio_data is not base64") from None
    if data.get("terminate_session") is True:
        return Terminate()
    if data.get("force_end_utterance") is True:
        return ForceEndpoint()
    if "end_utterance_silence_threshold" in data:
        value = data["end_utterance_silence_threshold"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20000:
            raise InvalidClientMessage(4101, "end_utterance_silence_threshold must be 0 to 20000 ms")
        return UpdateConfiguration({"min_turn_silence": value, "max_turn_silence": value})
    raise InvalidClientMessage(4101, "unknown message")


def encode_server(message: ServerMessage) -> list[str]:
    """Frames for a message: v2 sends none for an unformatted final, two at the end."""
    if isinstance(message, TurnUpdate):
        if message.end_of_turn and not message.is_formatted:
            return []  # its formatted twin follows: v2 sends one final, punctuated
        words = [
            {"start": w.start, "end": w.end, "confidence": float(w.confidence), "text": w.text}
            for w in message.words
        ]
        body: dict[str, Any] = {
            "message_type": "FinalTranscript" if message.end_of_turn else "PartialTranscript",
            "audio_start": words[0]["start"] if words else 0,
            "audio_end": words[-1]["end"] if words else 0,
            "confidence": float(message.end_of_turn_confidence),
            "text": message.transcript if message.end_of_turn else " ".join(w["text"] for w in words),
            "words": words,
            "created": datetime.now(timezone.utc).isoformat(),
        }
        if message.end_of_turn:
            body.update(punctuated=True, text_formatted=True)
        return [json.dumps(body)]
    if isinstance(message, Begin):
        expires = message.expires_at or datetime.now(timezone.utc)
        return [json.dumps({"message_type": "SessionBegins", "session_id": message.session_id,
                            "expires_at": expires.isoformat()})]
    if isinstance(message, Termination):
        return [
            json.dumps({"message_type": "SessionInformation",
                        "audio_duration_seconds": float(message.audio_duration_seconds or 0)}),
            json.dumps({"message_type": "SessionTerminated"}),
        ]
    if isinstance(message, ServerErrorMessage):
        return [json.dumps({"error": message.message})]
    raise TypeError(f"not a server message this codec sends: {message!r}")
