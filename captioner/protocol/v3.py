"""AssemblyAI Universal Streaming v3: a pure codec, both directions, no I/O.

The client uses `connect_url`, `credentials`, `check_update`, `updated`, `encode_client`
and `decode_server`; the fake and embedded servers use `parse_query`, `decode_client`
and `encode_server`. Field
names and types follow ../shared/PROTOCOL.md (the official SDK's models). Decoders
raise `ProtocolError` and nothing else, whatever the input.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ProtocolError
from ..urls import redact_url
from .messages import (
    Audio,
    Begin,
    ClientMessage,
    ForceEndpoint,
    Ignored,
    KeepAlive,
    ServerErrorMessage,
    ServerMessage,
    ServerWarning,
    SessionParams,
    Terminate,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
    WireWord,
)

NAME = "v3"
PATH = "/v3/ws"
DEFAULT_URL = "wss://streaming.assemblyai.com/v3/ws"
# The service's documented turn silences, when a client sets none.
MIN_TURN_SILENCE_MS = 400
MAX_TURN_SILENCE_MS = 1280
ENCODINGS = ("pcm_s16le",)  # the only encoding captioner sends and its servers decode
ALL_ENCODINGS = ("pcm_s16le", "pcm_mulaw", "opus", "ogg_opus", "aac")

# Settings a client may change during a session with UpdateConfiguration.
UPDATABLE = {
    "end_of_turn_confidence_threshold": float,
    "min_turn_silence": int,
    "min_end_of_turn_silence_when_confident": int,
    "max_turn_silence": int,
    "vad_threshold": float,
    "format_turns": bool,
    "keyterms_prompt": list,
    "filter_profanity": bool,
    "prompt": str,
    "language_codes": list,
}


class SessionRejected(ProtocolError):
    """The server refuses a session's settings; it closes with `code` and `reason`."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class InvalidClientMessage(ProtocolError):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------- client side


def connect_url(base_url: str, params: SessionParams) -> str:
    """The URL to open: `base_url` (its path defaults to /v3/ws) plus the session query."""
    parts, path = websocket_url_parts(base_url, PATH)
    query = dict(parse_qsl(parts.query))
    query.update(_query_values(params))
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


def websocket_url_parts(base_url: str, default_path: str) -> tuple[SplitResult, str]:
    """A ws:// or wss:// URL's parts and its path (`default_path` when it has none), or
    one clear ProtocolError; shared by every protocol's client."""
    try:
        parts = urlsplit(base_url)
        parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise ProtocolError(f"not a valid URL: {redact_url(base_url)}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ProtocolError(f"not a WebSocket URL (ws:// or wss://): {redact_url(base_url)}")
    return parts, parts.path if parts.path not in ("", "/") else default_path


def _query_values(params: SessionParams) -> dict[str, str]:
    values: dict[str, Any] = {"sample_rate": params.sample_rate, "encoding": params.encoding}
    if params.format_turns:
        values["format_turns"] = True
    if params.min_turn_silence is not None:
        values["min_turn_silence"] = params.min_turn_silence
    if params.max_turn_silence is not None:
        values["max_turn_silence"] = params.max_turn_silence
    if params.speaker_labels:
        values["speaker_labels"] = True
    if params.keyterms_prompt:
        values["keyterms_prompt"] = list(params.keyterms_prompt)
    values.update(params.extra)
    # As the official SDK does: booleans as True/False, lists as JSON.
    return {
        key: json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        for key, value in values.items()
    }


def auth_headers(credential: str | None) -> dict[str, str]:
    """The handshake headers: the raw key or temporary token, no `Bearer`."""
    return {"Authorization": credential} if credential else {}


def credentials(credential: str | None, is_token: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Where the key or a temporary token goes: (handshake headers, query parameters).
    v3 sends both in the Authorization header."""
    return auth_headers(credential), {}


# The old name of min_turn_silence, still accepted by the service.
_ALIASES = {"min_end_of_turn_silence_when_confident": "min_turn_silence"}


def check_update(settings: Mapping[str, Any]) -> None:
    """Refuse (ValueError) what the service would refuse in an UpdateConfiguration."""
    for key, value in settings.items():
        expected = UPDATABLE.get(key)
        if expected is None:
            raise ValueError(f"{key} cannot be changed during a session; these can: {sorted(UPDATABLE)}")
        if not value_fits(expected, value):
            raise ValueError(f"{key} must be {expected.__name__}, not {value!r}")


def updated(params: SessionParams, settings: Mapping[str, Any]) -> SessionParams:
    """The session settings after a live UpdateConfiguration: what a reconnect asks for again."""
    fields: dict[str, Any] = {}
    extra = dict(params.extra)
    for key, value in settings.items():
        key = _ALIASES.get(key, key)
        if key not in UPDATABLE:
            continue
        if key in ("min_turn_silence", "max_turn_silence", "format_turns"):
            fields[key] = value
        elif key == "keyterms_prompt":
            fields[key] = tuple(value)
        else:
            extra[key] = value
    return replace(params, **fields, extra=extra)


def encode_client(message: ClientMessage) -> bytes | str:
    if isinstance(message, Audio):
        return message.pcm
    if isinstance(message, Terminate):
        return '{"type": "Terminate"}'
    if isinstance(message, ForceEndpoint):
        return '{"type": "ForceEndpoint"}'
    if isinstance(message, KeepAlive):
        return '{"type": "KeepAlive"}'
    if isinstance(message, UpdateConfiguration):
        return json.dumps({"type": "UpdateConfiguration", **message.params})
    raise TypeError(f"not a client message: {message!r}")


def decode_server(frame: str | bytes) -> ServerMessage:
    data = _json_object(frame, "server")
    kind = data.get("type")
    if kind is None:
        if "error" in data:  # a bare {"error": ...} means the same as an Error message
            return ServerErrorMessage(_text(data, "error"), _optional_int(data, "error_code"))
        raise ProtocolError("message has no type")
    if kind == "Turn":
        return _turn(data)
    if kind == "Begin":
        return Begin(_text(data, "id"), _timestamp(data.get("expires_at")))
    if kind == "Termination":
        return Termination(
            _optional_int(data, "audio_duration_seconds"),
            _optional_int(data, "session_duration_seconds"),
        )
    if kind == "Error":
        return ServerErrorMessage(_text(data, "error"), _optional_int(data, "error_code"))
    if kind == "Warning":
        return ServerWarning(_text(data, "warning"), _optional_int(data, "warning_code"))
    if not isinstance(kind, str):
        raise ProtocolError(f"message type is not a string: {_preview(kind)}")
    return Ignored(kind)


def _turn(data: Mapping[str, Any]) -> TurnUpdate:
    words = data.get("words", [])
    if not isinstance(words, list):
        raise ProtocolError("Turn.words is not a list")
    return TurnUpdate(
        turn_order=_int(data, "turn_order"),
        transcript=_text(data, "transcript"),
        words=tuple(_word(word) for word in words),
        end_of_turn=_bool(data, "end_of_turn"),
        is_formatted=_bool(data, "turn_is_formatted", False),
        end_of_turn_confidence=_number(data, "end_of_turn_confidence", 0.0),
        speaker=_optional_text(data, "speaker_label"),
        language=_optional_text(data, "language_code"),
    )


def _word(data: Any) -> WireWord:
    if not isinstance(data, dict):
        raise ProtocolError("a word is not an object")
    start, end = _int(data, "start"), _int(data, "end")
    if end < start:
        raise ProtocolError(f"word ends before it starts ({start} > {end})")
    return WireWord(
        text=_text(data, "text"),
        start=start,
        end=end,
        confidence=_number(data, "confidence", 1.0),
        is_final=_bool(data, "word_is_final", True),
        speaker=_optional_text(data, "speaker"),
    )


# ---------------------------------------------------------------- server side


def parse_query(query: str) -> SessionParams:
    """The session settings from a connection's query string, as the service reads them."""
    raw = dict(parse_qsl(query, keep_blank_values=True))
    sample_rate = pop_sample_rate(raw)
    encoding = raw.pop("encoding", "pcm_s16le")
    if encoding not in ALL_ENCODINGS:
        raise SessionRejected(3006, f"Invalid encoding: {_preview(encoding)}")
    try:
        min_silence = raw.pop("min_turn_silence", None) or raw.pop(
            "min_end_of_turn_silence_when_confident", None
        )
        max_silence = raw.pop("max_turn_silence", None)
        keyterms = json.loads(raw.pop("keyterms_prompt", "[]"))
        if not isinstance(keyterms, list) or not all(isinstance(k, str) for k in keyterms):
            raise ValueError("keyterms_prompt")
        return SessionParams(
            sample_rate=sample_rate,
            encoding=encoding,
            format_turns=_query_bool(raw.pop("format_turns", "false")),
            min_turn_silence=None if min_silence is None else int(min_silence),
            max_turn_silence=None if max_silence is None else int(max_silence),
            speaker_labels=_query_bool(raw.pop("speaker_labels", "false")),
            keyterms_prompt=tuple(keyterms),
            extra=raw,  # unknown parameters are kept and ignored, as the service does
        )
    except (ValueError, TypeError) as error:
        raise SessionRejected(3006, f"Input validation error: {error}") from None


def pop_sample_rate(raw: dict[str, str]) -> int:
    """The query's sample_rate, removed from `raw`; refused (4000) as the service does."""
    try:
        sample_rate = int(raw.pop("sample_rate"))
    except (KeyError, ValueError):
        raise SessionRejected(4000, "Sample rate must be a positive integer") from None
    if sample_rate <= 0:
        raise SessionRejected(4000, "Sample rate must be a positive integer")
    return sample_rate


def _query_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def value_fits(expected: type, value: Any) -> bool:
    """Whether `value` has the JSON type an UPDATABLE setting takes: a float setting takes
    any number; a bool is neither an int nor a float."""
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def decode_client(frame: str | bytes) -> ClientMessage:
    """A client frame: binary audio, or one of the JSON operations."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return Audio(bytes(frame))
    try:
        data = _json_object(frame, "client")
    except ProtocolError as error:
        raise InvalidClientMessage(4100, str(error)) from None
    kind = data.get("type")
    if kind == "Terminate":
        return Terminate()
    if kind == "ForceEndpoint":
        return ForceEndpoint()
    if kind == "KeepAlive":
        return KeepAlive()
    if kind == "UpdateConfiguration":
        params = {key: value for key, value in data.items() if key != "type"}
        for key, value in params.items():
            expected = UPDATABLE.get(key)
            if expected is None:
                continue  # unknown settings are ignored
            if not value_fits(expected, value):
                raise InvalidClientMessage(4101, f"{key} must be {expected.__name__}")
        return UpdateConfiguration(params)
    raise InvalidClientMessage(4101, f"unknown message type: {_preview(kind)}")


def encode_server(message: ServerMessage) -> str:
    if isinstance(message, TurnUpdate):
        body: dict[str, Any] = {
            "type": "Turn",
            "turn_order": message.turn_order,
            "turn_is_formatted": message.is_formatted,
            "end_of_turn": message.end_of_turn,
            "transcript": message.transcript,
            "end_of_turn_confidence": float(message.end_of_turn_confidence),
            "words": [_encode_word(word) for word in message.words],
        }
        if message.speaker is not None:
            body["speaker_label"] = message.speaker
        if message.language is not None:
            body["language_code"] = message.language
        return json.dumps(body)
    if isinstance(message, Begin):
        expires = message.expires_at or datetime.now(timezone.utc)
        return json.dumps({"type": "Begin", "id": message.session_id, "expires_at": int(expires.timestamp())})
    if isinstance(message, Termination):
        return json.dumps(
            {
                "type": "Termination",
                # Integers: the official SDK's reader crashes on a fractional value.
                "audio_duration_seconds": int(message.audio_duration_seconds or 0),
                "session_duration_seconds": int(message.session_duration_seconds or 0),
            }
        )
    if isinstance(message, ServerErrorMessage):
        body = {"type": "Error", "error": message.message}
        if message.code is not None:
            body["error_code"] = message.code
        return json.dumps(body)
    if isinstance(message, ServerWarning):
        return json.dumps({"type": "Warning", "warning_code": message.code or 0, "warning": message.message})
    raise TypeError(f"not a server message this codec sends: {message!r}")


def _encode_word(word: WireWord) -> dict[str, Any]:
    body = {
        "start": word.start,
        "end": word.end,
        "confidence": float(word.confidence),
        "text": word.text,
        "word_is_final": word.is_final,
    }
    if word.speaker is not None:
        body["speaker"] = word.speaker
    return body


# ---------------------------------------------------------------- field readers


def _json_object(frame: str | bytes, sender: str) -> dict[str, Any]:
    if not isinstance(frame, str):
        raise ProtocolError(f"expected a JSON text frame from the {sender}, got {len(frame)} binary bytes")
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"not JSON: {_preview(frame)} ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"not a JSON object: {_preview(frame)}")
    return data


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string, got {_preview(value)}")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string, got {_preview(value)}")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"{key} must be a number, got {_preview(value)}")
    return int(round(value))


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{key} must be a number, got {_preview(value)}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"{key} must be true or false, got {_preview(value)}")
    return value


def _timestamp(value: Any) -> datetime | None:
    """`expires_at` as unix seconds or an ISO string; anything else is not worth failing for."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _preview(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
