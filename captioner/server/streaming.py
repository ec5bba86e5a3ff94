"""A server that speaks AssemblyAI Universal Streaming v3 on /v3/ws.

The connection handling shared by the fake server (tests) and `captioner serve` (the
embedded recognizer): authorisation, session settings from the query, `Begin`, the
message loop, the service's limits and close codes, `Termination`. What the server says
about the audio comes from a `Transcriber`, one per session, which emits turn updates
through a callback; the server only moves frames, through the pure v3 codec.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Callable, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..protocol import CODECS, v3
from ..protocol.messages import (
    Audio,
    Begin,
    ForceEndpoint,
    ServerMessage,
    SessionParams,
    Terminate,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
)


# Both protocols on one server, told apart by path, as the service does.
CODECS_BY_PATH = {codec.PATH: codec for codec in CODECS.values()}
TOKEN_PATH = "/v3/token"


def _json_response(connection: ServerConnection, status: HTTPStatus, body: dict):
    response = connection.respond(status, json.dumps(body))
    response.headers["Content-Type"] = "application/json"
    return response


class Transcriber(Protocol):
    """Turns one session's audio into turn updates, emitted through the callback it was given."""

    async def accept(self, pcm: bytes) -> None:
        """Take 16-bit PCM at the session's rate. May wait, which pushes back on the client."""

    async def force_endpoint(self) -> None:
        """End the turn in progress now."""

    async def update(self, settings: dict) -> None:
        """Apply an UpdateConfiguration."""

    async def finish(self) -> None:
        """The client terminated: emit every remaining turn before returning."""

    async def close(self) -> None:
        """The connection is gone; release what the session holds."""


Emit = Callable[[TurnUpdate], None]
TranscriberFactory = Callable[[SessionParams, Emit], Transcriber]


@dataclass(frozen=True)
class ServerLimits:
    """The service's rules, each enforced with its close code."""

    chunk_ms: tuple[int, int] | None = (50, 1000)  # 3007 outside; None accepts any size
    idle_timeout: float | None = None  # seconds without a message: 4031; the query's inactivity_timeout wins
    max_sessions: int | None = None  # concurrent sessions: 3009 beyond
    max_session_seconds: float | None = None  # 3008 beyond
    max_frame_bytes: int = 1 << 20  # a bigger frame closes with 1009 (message too big)
    max_control_per_second: int | None = 50  # JSON messages (not audio): 1008 beyond


@dataclass(frozen=True)
class Frame:
    direction: str  # "in" (client to server) or "out"
    data: str | bytes
    audio_ms: float  # received audio when it crossed the wire
    at: float = field(default_factory=time.monotonic)  # system-wide monotonic clock, for benchmarks


@dataclass
class ConnectionRecord:
    """What one client connection did; frames and audio are kept only when recording."""

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


class StreamingServer:
    def __init__(
        self,
        transcribers: TranscriberFactory,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        reject_with: str = "close",  # how a wrong key is refused: "close" (4001) or "http" (401)
        limits: ServerLimits = ServerLimits(),
        record: bool = False,
        reply_delay_ms: float = 0,
    ):
        self.transcribers = transcribers
        self.host, self.port = host, port
        self.api_key = api_key
        self.reject_with = reject_with
        self.limits = limits
        self.record = record
        self.reply_delay = reply_delay_ms / 1000
        self.connections: list[ConnectionRecord] = []  # only when recording
        self.tokens: dict[str, float] = {}  # temporary token -> expiry (unix seconds)
        self.active_sessions = 0
        self._server: Server | None = None

    @property
    def base_url(self) -> str:
        """ws://HOST:PORT: each protocol's client adds its own path (/v3/ws, /v2/realtime/ws)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + v3.PATH

    async def start(self) -> StreamingServer:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._check_request,
            compression=None,
            max_size=self.limits.max_frame_bytes,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> StreamingServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def authorised(self, headers, query: str = "") -> bool:
        """The API key in the Authorization header, or a temporary token there or in ?token=."""
        if self.api_key is None:
            return True
        given = headers.get("Authorization") or dict(parse_qsl(query)).get("token")
        if given == self.api_key:
            return True
        expires = self.tokens.get(given or "")
        return expires is not None and expires > time.time()

    def _check_request(self, connection: ServerConnection, request):
        parts = urlsplit(request.path)
        if parts.path == TOKEN_PATH:
            return self._token(connection, request, parts.query)
        if parts.path not in CODECS_BY_PATH:
            paths = " or ".join(CODECS_BY_PATH)
            return connection.respond(HTTPStatus.NOT_FOUND, f"no endpoint here; use {paths}\n")
        if self.reject_with == "http" and not self.authorised(request.headers, parts.query):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    def _token(self, connection: ServerConnection, request, query: str):
        """GET /v3/token?expires_in_seconds=N with the API key: {"token": ...}, as the service."""
        if self.api_key is None or request.headers.get("Authorization") != self.api_key:
            return _json_response(connection, HTTPStatus.UNAUTHORIZED, {"error": "Invalid API key"})
        try:
            seconds = int(dict(parse_qsl(query))["expires_in_seconds"])
            if not 1 <= seconds <= 600:
                raise ValueError
        except (KeyError, ValueError):
            return _json_response(connection, HTTPStatus.BAD_REQUEST,
                                  {"error": "expires_in_seconds must be 1 to 600"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + seconds
        return _json_response(connection, HTTPStatus.OK, {"token": token})

    def conversation(self, websocket: ServerConnection, record: ConnectionRecord, index: int) -> Conversation:
        return Conversation(self, websocket, record)

    async def _handle(self, websocket: ServerConnection) -> None:
        parts = urlsplit(websocket.request.path)
        record = ConnectionRecord(parts.path, parts.query, dict(websocket.request.headers.raw_items()))
        index = len(self.connections)
        if self.record:
            self.connections.append(record)
        try:
            await self.conversation(websocket, record, index).run()
        finally:
            record.close_code = websocket.close_code
            record.close_reason = websocket.close_reason or ""
            record.finished.set()


class Conversation:
    """One connection: read client frames, answer through an outbox that can lag."""

    def __init__(self, server: StreamingServer, websocket: ServerConnection, record: ConnectionRecord):
        self.codec = CODECS_BY_PATH[record.path]
        self.server = server
        self.websocket = websocket
        self.record = record
        self.keep = server.record
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.opened = time.monotonic()
        self.audio_ms = 0.0
        self.params: SessionParams | None = None
        self._window_start = time.monotonic()
        self._window_count = 0

    async def run(self) -> None:
        websocket, server = self.websocket, self.server
        if not server.authorised(websocket.request.headers, self.record.query):
            await self.close(4001, "Not Authorized")
            return
        try:
            params = self.codec.parse_query(self.record.query)
            idle_timeout = _inactivity_timeout(params, server.limits.idle_timeout)
        except v3.SessionRejected as rejected:
            await self.close(rejected.code, rejected.reason)
            return
        if params.encoding not in v3.ENCODINGS:
            await self.close(3006, f"Input validation error: this server decodes only {', '.join(v3.ENCODINGS)}")
            return
        if server.limits.max_sessions is not None and server.active_sessions >= server.limits.max_sessions:
            await self.close(3009, "Too many concurrent sessions")
            return
        self.record.params = self.params = params
        server.active_sessions += 1
        writer = asyncio.create_task(self._write())
        transcriber = server.transcribers(params, self.send)
        try:
            self.record.session_id = str(uuid.uuid4())
            expires = datetime.now(timezone.utc) + timedelta(seconds=server.limits.max_session_seconds or 3 * 3600)
            if await self.before_begin():
                return
            self.send(Begin(self.record.session_id, expires))
            if await self.after_audio():
                return
            while True:
                try:
                    frame = await asyncio.wait_for(websocket.recv(), idle_timeout)
                except TimeoutError:
                    await self.close(4031, "Session idle for too long")
                    return
                if self.keep:
                    self.record.frames.append(Frame("in", frame, self.audio_ms))
                try:
                    message = self.codec.decode_client(frame)
                except v3.InvalidClientMessage as invalid:
                    await self.close(invalid.code, invalid.reason)
                    return
                if not isinstance(message, Audio) and self._too_many_controls():
                    await self.close(1008, "Too many messages: at most "
                                     f"{server.limits.max_control_per_second} JSON messages a second")
                    return
                if isinstance(message, Audio):
                    problem = self._check_audio(message.pcm)
                    if problem:
                        await self.close(*problem)
                        return
                    self.record.audio_bytes += len(message.pcm)
                    if self.keep:
                        self.record.audio += message.pcm
                    self.audio_ms = self.record.audio_bytes / 2 / params.sample_rate * 1000
                    await transcriber.accept(message.pcm)
                    if await self.after_audio():
                        return
                elif isinstance(message, ForceEndpoint):
                    await transcriber.force_endpoint()
                elif isinstance(message, UpdateConfiguration):
                    await transcriber.update(message.params)
                elif isinstance(message, Terminate):
                    if await self.on_terminate():
                        return
                    await transcriber.finish()
                    self.send(
                        Termination(
                            audio_duration_seconds=int(self.audio_ms // 1000),
                            session_duration_seconds=int(time.monotonic() - self.opened),
                        )
                    )
                    await self.close(1000)
                    return
        except ConnectionClosed:
            pass
        finally:
            server.active_sessions -= 1
            await transcriber.close()
            writer.cancel()

    def _too_many_controls(self) -> bool:
        """A client flooding control messages (a bug or an attack) is cut off; audio (v2
        sends it as JSON too) is not counted."""
        limit = self.server.limits.max_control_per_second
        if limit is None:
            return False
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        return self._window_count > limit

    def _check_audio(self, pcm: bytes) -> tuple[int, str] | None:
        if len(pcm) % 2:
            return 3006, "Input validation error: pcm_s16le audio must be whole 16-bit samples"
        limits = self.server.limits
        assert self.params is not None
        if limits.chunk_ms is not None:
            low, high = limits.chunk_ms
            duration = len(pcm) / 2 / self.params.sample_rate * 1000
            if not low <= duration <= high:
                return 3007, f"Audio chunk duration violation: {duration:.1f} ms; send {low} to {high} ms per message"
        if limits.max_session_seconds is not None and time.monotonic() - self.opened > limits.max_session_seconds:
            return 3008, "Maximum session duration exceeded"
        return None

    async def before_begin(self) -> bool:
        """Called before Begin is sent; True ends the conversation (fault injection)."""
        return False

    async def after_audio(self) -> bool:
        """Called after Begin and after each audio frame; True ends the conversation."""
        return False

    async def on_terminate(self) -> bool:
        """Called when Terminate arrives, before the flush; True ends the conversation."""
        return False

    def send(self, *messages: ServerMessage | str | bytes) -> None:
        due = time.monotonic() + self.server.reply_delay
        for message in messages:
            frames = message if isinstance(message, (str, bytes)) else self.codec.encode_server(message)
            for frame in [frames] if isinstance(frames, (str, bytes)) else frames:
                self.outbox.put_nowait((due, frame))

    async def _write(self) -> None:
        closed = False
        while True:
            due, frame = await self.outbox.get()
            try:
                if not closed:  # once closed, the rest is discarded so drain() returns
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if self.keep:
                        self.record.frames.append(Frame("out", frame, self.audio_ms))
                    await self.websocket.send(frame)
            except ConnectionClosed:
                closed = True
            finally:
                self.outbox.task_done()

    async def drain(self) -> None:
        await self.outbox.join()

    async def close(self, code: int, reason: str = "") -> None:
        """Say what is queued, then close, reading (and discarding) until the client agrees.

        The reading matters: a client still streaming audio would otherwise fill the
        receive queue, websockets would stop reading the socket, and the client's close
        frame would sit unread behind the audio until the close timed out.
        """
        await self.drain()
        closing = asyncio.create_task(self.websocket.close(code, reason))
        try:
            async for frame in self.websocket:
                if self.keep:
                    self.record.frames.append(Frame("in", frame, self.audio_ms))
        except ConnectionClosed:
            pass
        await closing


def _inactivity_timeout(params: SessionParams, default: float | None) -> float | None:
    value = params.extra.get("inactivity_timeout")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise v3.SessionRejected(3006, "Input validation error: inactivity_timeout must be a number") from None
    if not 5 <= seconds <= 3600:
        raise v3.SessionRejected(3006, "Input validation error: inactivity_timeout must be 5 to 3600 seconds")
    return seconds


class ServerThread:
    """A server on its own event loop in a daemon thread, for synchronous callers:

    with ServerThread(FakeStreamingServer(script)) as server:
        subprocess.run(["captioner", "replay", wav, "--url", server.url])
    """

    def __init__(self, server: StreamingServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="captioner-server", daemon=True)

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
