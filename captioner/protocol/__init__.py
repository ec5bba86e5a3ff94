"""Streaming protocols as pure codecs behind one interface.

A codec is a module with the names in `Codec` below. The session looks its codec up by
name in `CODECS`; adding a protocol is adding a module here, not editing the engine.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Mapping, Protocol

from ..errors import UsageError
from . import v2, v3
from .messages import ClientMessage, ServerMessage, SessionParams


class Codec(Protocol):
    NAME: str
    PATH: str
    DEFAULT_URL: str

    def connect_url(self, base_url: str, params: SessionParams) -> str: ...
    def credentials(self, credential: str | None, is_token: bool) -> tuple[dict[str, str], dict[str, str]]: ...
    def check_update(self, settings: Mapping[str, Any]) -> None: ...
    def updated(self, params: SessionParams, settings: Mapping[str, Any]) -> SessionParams: ...
    def encode_client(self, message: ClientMessage) -> bytes | str: ...
    def decode_server(self, frame: str | bytes) -> ServerMessage: ...


CODECS: dict[str, ModuleType] = {v3.NAME: v3, v2.NAME: v2}


def codec(name: str) -> Codec:
    try:
        return CODECS[name]  # type: ignore[return-value]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; known: {', '.join(CODECS)}") from None
