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

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Iterable
from urllib.parse import urlsplit

import numpy as np

from ..protocol import closecodes
from ..protocol.messages import Audio, ClientMessage, SessionParams, Terminate
from ..server.streaming import Conversation, Emit, ServerLimits, StreamingServer, Transcriber
from .player import ScriptPlayer
from .script import TranscriptScript
from .thread import ServerThread

__all__ = ["ANY", "ConnectionRecord", "FakeServerThread", "FakeStreamingServer", "Fault", "Frame", "close_at",
           "drop_at", "malformed_at"]


@dataclass(frozen=True)
class Frame:
    direction: str  # "in" (client to server) or "out"
    data: str | bytes
    audio_ms: float  # received audio when it crossed the wire
    at: float = field(default_factory=time.monotonic)  # system-wide monotonic clock, for benchmarks


@dataclass
class ConnectionRecord:
    """What one client connection did: every frame both ways, and the audio received."""

    path: str
    query: str
    headers: dict[str, str]
    params: SessionParams | None = None
    frames: list[Frame] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_bytes: int = 0
    close_code: int | None = None
    close_reason: str = ""
    session_id: str = ""
    finished: threading.Event = field(default_factory=threading.Event)

    def received(self, kind: type | None = None) -> list[str | bytes]:
        """Frames from the client: all, or only text (`str`) or binary (`bytes`)."""
        return [f.data for f in self.frames if f.direction == "in" and (kind is None or isinstance(f.data, kind))]

    def sent_messages(self) -> list[dict]:
        """The JSON messages the server sent, decoded (malformed ones skipped)."""
        messages = []
        for frame in self.frames:
            if frame.direction == "out" and isinstance(frame.data, str):
                try:
                    messages.append(json.loads(frame.data))
                except ValueError:
                    pass
        return messages


@dataclass(frozen=True)
class Fault:
    """Something to go wrong on one connection.

    action: "close" (a close frame with `code`), "drop" (abort TCP, no close frame),
    "malformed" (send `frame` as if it were a message).
    when: "audio" (once the received audio reaches `at_ms`), "connect" (before Begin),
    "terminate" (when Terminate arrives, before the last turn is flushed).
    connection: which connection, counting from 0; ANY: the first one it can fire on.
    """

    action: str
    at_ms: int = 0
    code: int = 1011
    reason: str = ""
    frame: str | bytes = '{"type": "Turn", "turn_order": '
    connection: int = 0
    when: str = "audio"


ANY = -1


def close_at(at_ms: int, code: int, reason: str = "", connection: int = 0) -> Fault:
    return Fault("close", at_ms, code=code, reason=reason or closecodes.MEANINGS.get(code, ""), connection=connection)


def drop_at(at_ms: int, connection: int = 0) -> Fault:
    return Fault("drop", at_ms, connection=connection)


def malformed_at(at_ms: int, frame: str | bytes = Fault.frame, connection: int = 0) -> Fault:
    return Fault("malformed", at_ms, frame=frame, connection=connection)


class ScriptTranscriber:
    """Plays a transcript script, clocked by the audio received.

    With the script's `reference` audio (the WAV's 16 kHz PCM), it also listens: it finds
    where the received audio sits in the reference, so a client that reconnects and
    resends the turn in progress hears the rest of the script from there, as a real
    service would transcribe what it is sent. Until the first sound is placed, it says
    nothing (silence has no words). Without a reference, or when the audio is not the
    reference's (resampled, another file), the session is taken to start at 0.
    """

    PROBE_BYTES = 3200  # 100 ms of sound: unique within a fixture

    def __init__(self, script: TranscriptScript, params: SessionParams, emit: Emit, reference: bytes | None = None):
        self.script, self.params = script, params
        self.emit = emit
        self.bytes_per_ms = params.sample_rate * 2 / 1000
        self.received = 0
        self.reference = reference if reference is not None and params.sample_rate == 16000 else None
        self.silence_bytes = 0  # received before the first sound
        self.heard = bytearray()  # received from the first sound on, kept until it is placed
        self.settings: dict = {}  # UpdateConfiguration received before that
        self.player: ScriptPlayer | None = None if self.reference is not None else ScriptPlayer(script, params)

    def _emit(self, updates) -> None:
        for update in updates:
            self.emit(update)

    def _place(self, pcm: bytes) -> None:
        if not self.heard:  # only silence so far: look for the first sound in this chunk alone
            sound = np.flatnonzero(np.frombuffer(pcm, dtype="<i2"))
            if not len(sound):
                self.silence_bytes += len(pcm)
                return
            first = 2 * int(sound[0])
            self.silence_bytes += first
            pcm = pcm[first:]
        self.heard += pcm
        if len(self.heard) < self.PROBE_BYTES:
            return  # too little sound to place
        probe = bytes(self.heard[: self.PROBE_BYTES])
        position = self.reference.find(probe)
        while position > 0 and position % 2:  # a match must fall on a sample
            position = self.reference.find(probe, position + 1)
        origin = (position - self.silence_bytes) / self.bytes_per_ms if position >= 0 else 0
        self.player = ScriptPlayer(self.script, self.params, origin_ms=max(0.0, origin))
        self.player.update(self.settings)
        self.heard = bytearray()

    async def accept(self, pcm: bytes) -> None:
        self.received += len(pcm)
        if self.player is None:
            self._place(pcm)
        if self.player is not None:
            self._emit(self.player.advance(self.received / self.bytes_per_ms))

    async def force_endpoint(self) -> None:
        if self.player is not None:
            self._emit(self.player.force_endpoint())

    async def update(self, settings: dict) -> None:
        if self.player is not None:
            self.player.update(settings)
        else:
            self.settings.update(settings)

    async def finish(self) -> None:
        await self.force_endpoint()

    async def close(self) -> None:
        pass


class FakeStreamingServer(StreamingServer):
    """The production v3 server, telling a transcript script, recording every connection,
    and going wrong on request: faults, slow replies, a key refused over HTTP."""

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
        reference: bytes | None = None,
    ):
        """`reference`: the scripted WAV's 16 kHz PCM, to place resent audio (see
        ScriptTranscriber). `reject_with`: how a wrong key is refused, "close" (4001) or
        "http" (401), as the service does either."""
        super().__init__(
            lambda params, emit: ScriptTranscriber(script, params, emit, reference),
            host=host,
            port=port,
            api_key=api_key,
            limits=limits,
        )
        self.script = script
        self.faults = list(faults)
        self.reply_delay = reply_delay_ms / 1000
        self.reject_with = reject_with
        self.connections: list[ConnectionRecord] = []

    def _check_request(self, connection, request):
        refused = super()._check_request(connection, request)
        if refused is None and self.reject_with == "http":
            parts = urlsplit(request.path)
            if not self.authorised(request.headers, parts.query):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return refused

    def conversation(self, websocket) -> Conversation:
        """The handler of one connection; a subclass may wrap it (to hold a session, say)."""
        return RecordedConversation(self, websocket, len(self.connections))

    def take_faults(self, index: int, when: str, audio_ms: float = 0) -> list[Fault]:
        """The faults due now on connection `index`; each fires once."""
        due = [
            f for f in self.faults
            if f.when == when and f.connection in (index, ANY) and (when != "audio" or f.at_ms <= audio_ms)
        ]
        due.sort(key=lambda f: f.at_ms)
        for fault in due:
            self.faults.remove(fault)
        return due


class RecordedConversation(Conversation):
    """A production conversation that records every frame and fires the server's faults."""

    def __init__(self, server: FakeStreamingServer, websocket, index: int):
        super().__init__(server, websocket)
        self.fake = server
        self.index = index
        self.record = ConnectionRecord(self.path, self.query, dict(websocket.request.headers.raw_items()))
        server.connections.append(self.record)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.record.close_code = self.websocket.close_code
            self.record.close_reason = self.websocket.close_reason or ""
            self.record.finished.set()

    async def accept(self) -> float | None:
        idle_timeout = await super().accept()
        self.record.params = self.params
        return idle_timeout

    async def begin(self) -> bool:
        if await self._fire(self.fake.take_faults(self.index, "connect")):
            return False
        await super().begin()
        self.record.session_id = self.session_id
        return not await self._fire(self.fake.take_faults(self.index, "audio", self.audio_ms))

    async def receive(self) -> str | bytes:
        frame = await super().receive()
        self.record.frames.append(Frame("in", frame, self.audio_ms))
        return frame

    async def handle(self, message: ClientMessage, transcriber: Transcriber) -> bool:
        if isinstance(message, Terminate) and await self._fire(self.fake.take_faults(self.index, "terminate")):
            return False
        go_on = await super().handle(message, transcriber)
        if isinstance(message, Audio) and go_on:
            self.record.audio += message.pcm
            self.record.audio_bytes = self.audio_bytes
            return not await self._fire(self.fake.take_faults(self.index, "audio", self.audio_ms))
        return go_on

    def enqueue(self, frame) -> None:
        # Replies lag by the server's reply delay, in order.
        super().enqueue((time.monotonic() + self.fake.reply_delay, frame))

    async def transmit(self, item) -> None:
        due, frame = item
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.record.frames.append(Frame("out", frame, self.audio_ms))
        await super().transmit(frame)

    async def _fire(self, faults: list[Fault]) -> bool:
        """Fire `faults`; True when the connection is gone."""
        for fault in faults:
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
