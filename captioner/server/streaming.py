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
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Callable, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..protocol import CODECS, v3
from . import metrics
from ..protocol.messages import (
    Audio,
    Begin,
    ClientMessage,
    ForceEndpoint,
    ServerMessage,
    SessionParams,
    Terminate,
    Termination,
    TurnUpdate,
    UpdateConfiguration,
)

if TYPE_CHECKING:
    from .handover import Handover

# Both protocols on one server, told apart by path, as the service does.
CODECS_BY_PATH = {codec.PATH: codec for codec in CODECS.values()}
TOKEN_PATH = "/v3/token"
# For an orchestrator or a load balancer: alive, ready for sessions, Prometheus metrics.
HEALTH_PATH, READY_PATH, METRICS_PATH = "/healthz", "/readyz", "/metrics"
# While draining: a new session is told to try again (elsewhere, behind a load balancer),
# and the sessions still open at the end are closed with "service restart", which
# captioner's client answers by reconnecting and resending what was not yet final.
DRAINING_CLOSE = (1013, "Try again later: this server is draining")
DRAINED_CLOSE = (1012, "Service restart: this server is shutting down; reconnect")
WORKER_HEADER = "X-Captioner-Worker"  # which worker process answered (its pid)


def server_url(host: str, port: int) -> str:
    """ws://HOST:PORT (an IPv6 address in brackets): each protocol's client adds its path."""
    return f"ws://{f'[{host}]' if ':' in host else host}:{port}"


def _respond(connection: ServerConnection, status: HTTPStatus, body: bytes, content_type: str):
    response = connection.respond(status, "")
    response.body = body
    for name, value in (("Content-Type", content_type), ("Content-Length", str(len(body)))):
        del response.headers[name]  # websockets' Headers add a value on assignment: replace it
        response.headers[name] = value
    return response


def _json_response(connection: ServerConnection, status: HTTPStatus, body: dict):
    return _respond(connection, status, json.dumps(body).encode(), "application/json")


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


class StreamingServer:
    def __init__(
        self,
        transcribers: TranscriberFactory,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        limits: ServerLimits = ServerLimits(),
        handover: Handover | None = None,  # a worker of `serve --workers`: connections from its supervisor
    ):
        self.transcribers = transcribers
        self.host, self.port = host, port
        self.api_key = api_key
        self.limits = limits
        self.tokens: dict[str, float] = {}  # temporary token -> expiry (unix seconds)
        self.conversations: set[Conversation] = set()  # those with an open session
        self.draining = False
        self._server: Server | None = None
        self._handover = handover

    @property
    def base_url(self) -> str:
        """ws://HOST:PORT: each protocol's client adds its own path (/v3/ws, /v2/realtime/ws)."""
        return server_url(self.host, self.port)

    @property
    def active_sessions(self) -> int:
        return len(self.conversations)

    @property
    def url(self) -> str:
        return self.base_url + v3.PATH

    async def start(self) -> StreamingServer:
        where = self._handover.serve_options() if self._handover else {"host": self.host, "port": self.port}
        self._server = await serve(
            self._handle,
            **where,
            process_request=self._check_request,
            process_response=self._name_worker,
            compression=None,
            max_size=self.limits.max_frame_bytes,
        )
        if self._handover is None:  # a worker has no port of its own: its supervisor prints the URL
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def drain(self, seconds: float) -> None:
        """Stop taking sessions (not ready; new ones are told to try again), let the open
        ones run up to `seconds`, then close them so their clients resume elsewhere."""
        self.draining = True
        metrics.DRAINING.set(1)
        deadline = time.monotonic() + seconds
        while self.conversations and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        left = list(self.conversations)
        metrics.SESSIONS.labels("drained").inc(len(left))
        await asyncio.gather(*(_restart(conversation) for conversation in left), return_exceptions=True)

    def refusal(self) -> tuple[int, str, str] | None:
        """Why a new session would be refused now: (close code, reason, readiness), or None."""
        if self.draining:
            return (*DRAINING_CLOSE, "draining")
        if self.limits.max_sessions is not None and self.active_sessions >= self.limits.max_sessions:
            return 3009, "Too many concurrent sessions", "at capacity"
        return None

    async def stop(self) -> None:
        if self._handover is not None:
            await self._handover.release()
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
        if parts.path == HEALTH_PATH:
            return connection.respond(HTTPStatus.OK, "ok\n")
        if parts.path == READY_PATH:
            refusal = self.refusal()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE if refusal else HTTPStatus.OK,
                                      f"{refusal[2] if refusal else 'ready'}\n")
        if parts.path == METRICS_PATH:
            return _respond(connection, HTTPStatus.OK, *metrics.exposition())
        if parts.path not in CODECS_BY_PATH:
            paths = " or ".join(CODECS_BY_PATH)
            return connection.respond(HTTPStatus.NOT_FOUND, f"no endpoint here; use {paths}\n")
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

    def _name_worker(self, connection: ServerConnection, request, response):
        response.headers[WORKER_HEADER] = str(os.getpid())
        return response

    def conversation(self, websocket: ServerConnection) -> Conversation:
        """What handles one connection (the fake server's records and misbehaves)."""
        return Conversation(self, websocket)

    async def _handle(self, websocket: ServerConnection) -> None:
        await self.conversation(websocket).run()


class Conversation:
    """One connection: check it, begin a session, read client frames, answer through an
    outbox (so a slow client never holds up the transcriber), end with Termination."""

    def __init__(self, server: StreamingServer, websocket: ServerConnection):
        parts = urlsplit(websocket.request.path)
        self.path, self.query = parts.path, parts.query
        self.codec = CODECS_BY_PATH[self.path]
        self.server = server
        self.websocket = websocket
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.opened = time.monotonic()
        self.audio_bytes = 0
        self.params: SessionParams | None = None
        self.session_id = ""
        self._window_start = time.monotonic()
        self._window_count = 0

    @property
    def audio_ms(self) -> float:
        return self.audio_bytes / 2 / self.params.sample_rate * 1000 if self.params else 0.0

    async def run(self) -> None:
        idle_timeout = await self.accept()
        if self.params is None:
            return
        server = self.server
        server.conversations.add(self)
        metrics.SESSIONS.labels("accepted").inc()
        metrics.SESSIONS_ACTIVE.inc()
        writer = asyncio.create_task(self._write())
        transcriber = server.transcribers(self.params, self.send)
        try:
            if await self.begin():
                await self.serve(transcriber, idle_timeout)
        except ConnectionClosed:
            pass
        finally:
            server.conversations.discard(self)
            metrics.SESSIONS_ACTIVE.dec()
            await transcriber.close()
            writer.cancel()

    async def accept(self) -> float | None:
        """Check the key, the query and the limits; set `params`, or close with the
        service's code. Returns the idle timeout for this session."""
        server = self.server
        if not server.authorised(self.websocket.request.headers, self.query):
            await self.close(4001, "Not Authorized")
            return None
        try:
            params = self.codec.parse_query(self.query)
            idle_timeout = _inactivity_timeout(params, server.limits.idle_timeout)
        except v3.SessionRejected as rejected:
            await self.close(rejected.code, rejected.reason)
            return None
        if params.encoding not in v3.ENCODINGS:
            await self.close(3006, f"Input validation error: this server decodes only {', '.join(v3.ENCODINGS)}")
            return None
        refusal = server.refusal()
        if refusal:
            metrics.SESSIONS.labels("refused").inc()
            await self.close(*refusal[:2])
            return None
        self.params = params
        return idle_timeout

    async def begin(self) -> bool:
        """Send Begin; False ends the conversation (a subclass that misbehaves)."""
        self.session_id = str(uuid.uuid4())
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.server.limits.max_session_seconds or 3 * 3600)
        self.send(Begin(self.session_id, expires))
        return True

    async def serve(self, transcriber: Transcriber, idle_timeout: float | None) -> None:
        """The message loop, until Terminate, a limit, or the client goes."""
        while True:
            try:
                frame = await asyncio.wait_for(self.receive(), idle_timeout)
            except TimeoutError:
                await self.close(4031, "Session idle for too long")
                return
            try:
                message = self.codec.decode_client(frame)
            except v3.InvalidClientMessage as invalid:
                await self.close(invalid.code, invalid.reason)
                return
            if not await self.handle(message, transcriber):
                return

    async def receive(self) -> str | bytes:
        return await self.websocket.recv()

    async def handle(self, message: ClientMessage, transcriber: Transcriber) -> bool:
        """Act on one client message; False when the conversation is over."""
        if not isinstance(message, Audio) and self._too_many_controls():
            await self.close(1008, "Too many messages: at most "
                             f"{self.server.limits.max_control_per_second} JSON messages a second")
            return False
        if isinstance(message, Audio):
            problem = self._check_audio(message.pcm)
            if problem:
                await self.close(*problem)
                return False
            self.audio_bytes += len(message.pcm)
            metrics.AUDIO_SECONDS.inc(len(message.pcm) / 2 / self.params.sample_rate)
            await transcriber.accept(message.pcm)
        elif isinstance(message, ForceEndpoint):
            await transcriber.force_endpoint()
        elif isinstance(message, UpdateConfiguration):
            await transcriber.update(message.params)
        elif isinstance(message, Terminate):
            await self.terminate(transcriber)
            return False
        return True

    async def terminate(self, transcriber: Transcriber) -> None:
        """The client is done: every remaining turn, then Termination, then close."""
        await transcriber.finish()
        self.send(Termination(
            audio_duration_seconds=int(self.audio_ms // 1000),
            session_duration_seconds=int(time.monotonic() - self.opened),
        ))
        await self.close(1000)

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

    def send(self, *messages: ServerMessage | str | bytes) -> None:
        """Queue messages (or raw frames) for the client, in order."""
        for message in messages:
            frames = message if isinstance(message, (str, bytes)) else self.codec.encode_server(message)
            for frame in [frames] if isinstance(frames, (str, bytes)) else frames:
                self.enqueue(frame)

    def enqueue(self, frame: str | bytes) -> None:
        self.outbox.put_nowait(frame)

    async def transmit(self, item) -> None:
        """Send one outbox item (a frame) to the client."""
        await self.websocket.send(item)

    async def _write(self) -> None:
        closed = False
        while True:
            frame = await self.outbox.get()
            try:
                if not closed:  # once closed, the rest is discarded so drain() returns
                    await self.transmit(frame)
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
            while True:
                await self.receive()
        except ConnectionClosed:
            pass
        await closing


async def _restart(conversation: Conversation) -> None:
    """The server is going away: say what is decoded, then close with "service restart"
    (the message loop, still reading, sees the close and ends the session)."""
    await asyncio.wait_for(conversation.drain(), 5)
    await conversation.websocket.close(*DRAINED_CLOSE)


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
