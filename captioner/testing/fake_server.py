"""A fake AssemblyAI Universal Streaming v3 server for tests, on 127.0.0.1.

It is a real `websockets` server speaking the protocol of ../shared/PROTOCOL.md through
the same pure codec as the client (`captioner.protocol.v3`), so the official SDK can
talk to it too. It plays back a transcript script clocked by the audio it receives,
records every frame in both directions, and injects faults on request: close with a
code at an audio time, drop the TCP connection, send a malformed frame, delay replies,
refuse a wrong API key.

    async with FakeStreamingServer(TranscriptScript.load("fixtures/meeting.json")) as server:
        ...connect to server.url...
        server.connections[0].audio  # every PCM byte received

`FakeServerThread` runs one in a background thread for synchronous tests and for
commands under test in a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..protocol import closecodes
from ..protocol.messages import SessionParams
from ..server import Conversation, ConnectionRecord, Emit, Frame, ServerLimits, ServerThread, StreamingServer
from .player import ScriptPlayer
from .script import TranscriptScript

__all__ = ["ConnectionRecord", "FakeServerThread", "FakeStreamingServer", "Fault", "Frame", "close_at", "drop_at", "malformed_at"]


@dataclass(frozen=True)
class Fault:
    """Something to go wrong when the received audio reaches `at_ms` on one connection.

    action: "close" (a close frame with `code`), "drop" (abort TCP, no close frame),
    "malformed" (send `frame` as if it were a message).
    """

    action: str
    at_ms: int = 0
    code: int = 1011
    reason: str = ""
    frame: str | bytes = '{"type": "Turn", "turn_order": '
    connection: int = 0  # which connection it applies to, counting from 0


def close_at(at_ms: int, code: int, reason: str = "", connection: int = 0) -> Fault:
    return Fault("close", at_ms, code=code, reason=reason or closecodes.MEANINGS.get(code, ""), connection=connection)


def drop_at(at_ms: int, connection: int = 0) -> Fault:
    return Fault("drop", at_ms, connection=connection)


def malformed_at(at_ms: int, frame: str | bytes = Fault.frame, connection: int = 0) -> Fault:
    return Fault("malformed", at_ms, frame=frame, connection=connection)


class ScriptTranscriber:
    """Plays a transcript script, clocked by the audio received."""

    def __init__(self, script: TranscriptScript, params: SessionParams, emit: Emit):
        self.player = ScriptPlayer(script, params)
        self.emit = emit
        self.bytes_per_ms = params.sample_rate * 2 / 1000
        self.received = 0

    def _emit(self, updates) -> None:
        for update in updates:
            self.emit(update)

    async def accept(self, pcm: bytes) -> None:
        self.received += len(pcm)
        self._emit(self.player.advance(self.received / self.bytes_per_ms))

    async def force_endpoint(self) -> None:
        self._emit(self.player.force_endpoint())

    async def update(self, settings: dict) -> None:
        self.player.update(settings)

    async def finish(self) -> None:
        self._emit(self.player.force_endpoint())

    async def close(self) -> None:
        pass


class FakeStreamingServer(StreamingServer):
    """The v3 server of `captioner.server`, telling a transcript script, recording everything."""

    def __init__(
        self,
        script: TranscriptScript,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Iterable[Fault] = (),
        reply_delay_ms: float = 0,
        api_key: str | None = None,
        reject_with: str = "close",
        limits: ServerLimits = ServerLimits(),
    ):
        super().__init__(
            lambda params, emit: ScriptTranscriber(script, params, emit),
            host=host,
            port=port,
            api_key=api_key,
            reject_with=reject_with,
            limits=limits,
            record=True,
            reply_delay_ms=reply_delay_ms,
        )
        self.script = script
        self.faults = list(faults)

    def conversation(self, websocket, record: ConnectionRecord, index: int) -> Conversation:
        faults = sorted((f for f in self.faults if f.connection == index), key=lambda f: f.at_ms)
        return _FaultyConversation(self, websocket, record, faults)


class _FaultyConversation(Conversation):
    def __init__(self, server, websocket, record, faults: list[Fault]):
        super().__init__(server, websocket, record)
        self.faults = faults

    async def after_audio(self) -> bool:
        """Fire the faults now due; True when the connection is gone."""
        while self.faults and self.faults[0].at_ms <= self.audio_ms:
            fault = self.faults.pop(0)
            if fault.action == "malformed":
                self.send(fault.frame)
            elif fault.action == "close":
                await self.close(fault.code, fault.reason)  # what was said before still goes out
                return True
            elif fault.action == "drop":
                self.websocket.transport.abort()
                return True
            else:
                raise ValueError(f"unknown fault action {fault.action!r}")
        return False


# Runs any StreamingServer (the fake one included) in a background thread.
FakeServerThread = ServerThread
