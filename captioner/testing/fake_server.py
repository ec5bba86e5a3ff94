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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any, Iterable
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..protocol import closecodes, v3
from ..protocol.messages import (
    Audio,
    Begin,
    ForceEndpoint,
    ServerMessage,
    SessionParams,
    Terminate,
    Termination,
    UpdateConfiguration,
)
from .player import ScriptPlayer
from .script import TranscriptScript


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


@dataclass(frozen=True)
class Frame:
    direction: str  # "in" (client to server) or "out"
    data: str | bytes
    audio_ms: float  # received audio when it crossed the wire


@dataclass
class ConnectionRecord:
    """Everything one client connection did."""

    path: str
    query: str
    headers: dict[str, str]
    params: SessionParams | None = None
    frames: list[Frame] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
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


class FakeStreamingServer:
    def __init__(
        self,
        script: TranscriptScript,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Iterable[Fault] = (),
        reply_delay_ms: float = 0,
        api_key: str | None = None,
        reject_with: str = "close",  # how a wrong key is refused: "close" (4001) or "http" (401)
    ):
        self.script = script
        self.host, self.port = host, port
        self.faults = list(faults)
        self.reply_delay = reply_delay_ms / 1000
        self.api_key = api_key
        self.reject_with = reject_with
        self.connections: list[ConnectionRecord] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{v3.PATH}"

    async def start(self) -> FakeStreamingServer:
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._check_request, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeStreamingServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _authorised(self, headers) -> bool:
        return self.api_key is None or headers.get("Authorization") == self.api_key

    def _check_request(self, connection: ServerConnection, request):
        if urlsplit(request.path).path != v3.PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no endpoint here; use {v3.PATH}\n")
        if self.reject_with == "http" and not self._authorised(request.headers):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        request = websocket.request
        parts = urlsplit(request.path)
        record = ConnectionRecord(parts.path, parts.query, dict(request.headers.raw_items()))
        index = len(self.connections)
        self.connections.append(record)
        try:
            await _Conversation(self, websocket, record, index).run()
        finally:
            record.close_code = websocket.close_code
            record.close_reason = websocket.close_reason or ""
            record.finished.set()


class _Conversation:
    """One connection: read client frames, answer through an outbox that can lag."""

    def __init__(self, server: FakeStreamingServer, websocket: ServerConnection, record: ConnectionRecord, index: int):
        self.server = server
        self.websocket = websocket
        self.record = record
        self.faults = sorted((f for f in server.faults if f.connection == index), key=lambda f: f.at_ms)
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.opened = time.monotonic()
        self.audio_ms = 0.0

    async def run(self) -> None:
        websocket = self.websocket
        if not self.server._authorised(websocket.request.headers):
            await self._close(4001, "Not Authorized")
            return
        try:
            params = v3.parse_query(self.record.query)
        except v3.SessionRejected as rejected:
            await self._close(rejected.code, rejected.reason)
            return
        self.record.params = params
        player = ScriptPlayer(self.server.script, params)
        writer = asyncio.create_task(self._write())
        try:
            self.record.session_id = str(uuid.uuid4())
            expires = datetime.now(timezone.utc) + timedelta(hours=3)
            self.send(Begin(self.record.session_id, expires))
            await self._fire_faults()
            async for frame in websocket:
                self.record.frames.append(Frame("in", frame, self.audio_ms))
                try:
                    message = v3.decode_client(frame)
                except v3.InvalidClientMessage as invalid:
                    await self._close(invalid.code, invalid.reason)
                    return
                if isinstance(message, Audio):
                    self.record.audio += message.pcm
                    self.audio_ms = len(self.record.audio) / 2 / params.sample_rate * 1000
                    self.send(*player.advance(self.audio_ms))
                    if await self._fire_faults():
                        return
                elif isinstance(message, ForceEndpoint):
                    self.send(*player.force_endpoint())
                elif isinstance(message, UpdateConfiguration):
                    player.update(message.params)
                elif isinstance(message, Terminate):
                    self.send(*player.force_endpoint())
                    self.send(
                        Termination(
                            audio_duration_seconds=int(self.audio_ms // 1000),
                            session_duration_seconds=int(time.monotonic() - self.opened),
                        )
                    )
                    await self._close(1000)
                    return
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()

    def send(self, *messages: ServerMessage | str | bytes) -> None:
        due = time.monotonic() + self.server.reply_delay
        for message in messages:
            frame = message if isinstance(message, (str, bytes)) else v3.encode_server(message)
            self.outbox.put_nowait((due, frame))

    async def _write(self) -> None:
        closed = False
        while True:
            due, frame = await self.outbox.get()
            try:
                if not closed:  # once closed, the rest is discarded so _drain() returns
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    self.record.frames.append(Frame("out", frame, self.audio_ms))
                    await self.websocket.send(frame)
            except ConnectionClosed:
                closed = True
            finally:
                self.outbox.task_done()

    async def _drain(self) -> None:
        await self.outbox.join()

    async def _close(self, code: int, reason: str = "") -> None:
        """Say what is queued, then close, reading (and discarding) until the client agrees.

        The reading matters: a client still streaming audio would otherwise fill the
        receive queue, websockets would stop reading the socket, and the client's close
        frame would sit unread behind the audio until the close timed out.
        """
        await self._drain()
        closing = asyncio.create_task(self.websocket.close(code, reason))
        try:
            async for frame in self.websocket:
                self.record.frames.append(Frame("in", frame, self.audio_ms))
        except ConnectionClosed:
            pass
        await closing

    async def _fire_faults(self) -> bool:
        """Fire the faults now due; True when the connection is gone."""
        while self.faults and self.faults[0].at_ms <= self.audio_ms:
            fault = self.faults.pop(0)
            if fault.action == "malformed":
                self.send(fault.frame)
            elif fault.action == "close":
                await self._close(fault.code, fault.reason)  # what was said before still goes out
                return True
            elif fault.action == "drop":
                self.websocket.transport.abort()
                return True
            else:
                raise ValueError(f"unknown fault action {fault.action!r}")
        return False


class FakeServerThread:
    """A FakeStreamingServer on its own event loop in a daemon thread.

    with FakeServerThread(FakeStreamingServer(script)) as server:
        subprocess.run(["captioner", "replay", wav, "--url", server.url])
    """

    def __init__(self, server: FakeStreamingServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-streaming-server", daemon=True)

    def __enter__(self) -> FakeStreamingServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc_info: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
