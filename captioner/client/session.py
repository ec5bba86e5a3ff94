"""One streaming session over a WebSocket: audio out, decoded messages in.

Only I/O lives here; the codec turns frames into typed messages and the engine turns
those into events. Sending and receiving run as two tasks, so a slow reply never holds
up audio. At the end of the audio the session sends `Terminate` and keeps reading until
the service confirms with `Termination`, so the last final is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, replace
from typing import AsyncIterable, Callable, Union

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ..errors import (
    AuthError,
    CaptionerError,
    ConnectionFailed,
    MessageTooBig,
    NoTermination,
    NotAStreamingServer,
    ProtocolError,
    ServerError,
    UsageError,
)
from ..protocol import Codec, closecodes
from ..protocol.messages import Audio, Begin, ClientMessage, ServerMessage, SessionParams, Terminate, Termination
from .untrusted import Untrusted
from ..urls import redact_url, url_secrets, without_query

MAX_MESSAGE_BYTES = 1 << 20  # a bigger server message is refused (1009); a Turn of 8000 words fits
# Frames that are not the protocol's, with nothing before them that is: whoever answers
# is not a streaming server of this protocol (an echo server, a web app).
NOT_THE_PROTOCOL_AFTER = 3

@dataclass(frozen=True)
class MalformedFrame:
    """A frame the codec could not decode; the session goes on without it."""

    error: ProtocolError


Received = Union[ServerMessage, MalformedFrame]


@dataclass(frozen=True)
class SessionTimeouts:
    open: float = 10.0  # the WebSocket handshake
    begin: float = 5.0  # after the handshake, how long the service may take to begin the session
    terminate: float = 10.0  # after Terminate, how long the service may stay silent before we give up


class StreamingSession:
    def __init__(
        self,
        codec: Codec,
        base_url: str,
        params: SessionParams,
        credential: str | None = None,
        *,
        credential_is_token: bool = False,
        timeouts: SessionTimeouts = SessionTimeouts(),
    ):
        self.codec = codec
        self.params = params
        self.timeouts = timeouts
        # The codec says where the key or token goes (a header, or v2's ?token=).
        self._headers, in_query = codec.credentials(credential, credential_is_token)
        # Everything the server says is cleaned, and these never come back from it.
        self.untrusted = Untrusted([credential, *url_secrets(base_url)])
        try:
            self.url = codec.connect_url(base_url, replace(params, extra={**params.extra, **in_query}))
        except ProtocolError as error:
            raise UsageError(str(error)) from None
        self.safe_url = redact_url(self.url)
        self.where = without_query(self.safe_url)  # short enough for an error line
        self.bytes_sent = 0
        self.terminate_sent = False
        self._last_message_at = 0.0
        self.terminated = False
        self.began = False  # the server sent Begin
        self._began = asyncio.Event()
        self._not_protocol: list[MalformedFrame] = []  # frames that did not decode, before Begin
        self._websocket: ClientConnection | None = None
        self._controls: set[asyncio.Task] = set()

    @property
    def audio_seconds_sent(self) -> float:
        return self.bytes_sent / 2 / self.params.sample_rate

    async def run(self, audio: AsyncIterable[bytes], on_message: Callable[[Received], None]) -> None:
        """Send `audio` to its end, then Terminate; raise a CaptionerError if the session fails."""
        websocket = await self._connect()
        self._websocket = websocket
        async with websocket:
            sender = asyncio.create_task(self._send(websocket, audio), name="captioner-send")
            receiver = asyncio.create_task(self._receive(websocket, on_message), name="captioner-receive")
            try:
                await self._await_begin(receiver)
                await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if sender.done() and sender.exception() is None and not receiver.done():
                    await self._await_termination(receiver)
            finally:
                for task in (sender, receiver):
                    task.cancel()
                await asyncio.gather(sender, receiver, return_exceptions=True)
            for task in (receiver, sender):
                if not task.cancelled() and task.exception():
                    raise task.exception()  # not the protocol, or a bug of ours: not a close code
            self._raise_for_close(websocket)

    def control(self, message: ClientMessage) -> bool:
        """Send ForceEndpoint or UpdateConfiguration now, beside the audio. False when the
        session is not connected (the message is dropped: there is nobody to tell)."""
        websocket = self._websocket
        if websocket is None or self.terminate_sent:
            return False
        frame = self.codec.encode_client(message)
        task = asyncio.create_task(self._send_control(websocket, frame))
        self._controls.add(task)
        task.add_done_callback(self._controls.discard)
        return True

    async def _send_control(self, websocket: ClientConnection, frame) -> None:
        try:
            await websocket.send(frame)
        except websockets.ConnectionClosed:
            pass  # the receiver reports the close

    async def _await_begin(self, receiver: asyncio.Task) -> None:
        """A server that accepts the connection but never begins a session is not one to
        stream into: say so, instead of sending audio into the void."""
        began = asyncio.ensure_future(self._began.wait())
        try:
            done, _ = await asyncio.wait({began, receiver}, timeout=self.timeouts.begin,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            began.cancel()
        if not done:
            raise NotAStreamingServer(
                f"connected to {self.where}, but the server never began a session (no Begin within "
                f"{self.timeouts.begin:g} s): is it an AssemblyAI {self.codec.NAME} server?"
            )

    async def _await_termination(self, receiver: asyncio.Task) -> None:
        """All audio is out and Terminate sent: wait while the service works through it.

        The wait is for silence, not in total: socket buffers can hold minutes of audio
        sent faster than real time, and a server still sending turns is still working.
        """
        loop = asyncio.get_running_loop()
        limit = self.timeouts.terminate
        while not receiver.done():
            quiet_for = loop.time() - self._last_message_at
            if quiet_for >= limit:
                raise NoTermination(f"no Termination from {self.where}: it said nothing for {limit:g} s after Terminate")
            await asyncio.wait({receiver}, timeout=limit - quiet_for)

    async def _connect(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                additional_headers=self._headers,
                open_timeout=self.timeouts.open,
                # PCM barely compresses, and deflate would cost CPU on the audio path.
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                user_agent_header=f"captioner/{_version()}",
            )
        except Exception as error:
            failure = connect_error(error, self.where, self.timeouts.open, self.untrusted)
            if failure is None:
                raise
            raise failure from None

    async def _send(self, websocket: ClientConnection, audio: AsyncIterable[bytes]) -> None:
        try:
            async with contextlib.aclosing(aiter(audio)) as chunks:
                async for chunk in chunks:
                    await websocket.send(self.codec.encode_client(Audio(chunk)))
                    self.bytes_sent += len(chunk)
                    # send() returns without yielding while the socket takes the data, so a
                    # source with audio at hand (a fast replay) would hold the loop for a
                    # whole read block and keep replies waiting: yield once per chunk.
                    await asyncio.sleep(0)
            await websocket.send(self.codec.encode_client(Terminate()))
            self.terminate_sent = True
            self._last_message_at = asyncio.get_running_loop().time()
        except websockets.ConnectionClosed:
            pass  # the receiver reports why

    async def _receive(self, websocket: ClientConnection, on_message: Callable[[Received], None]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for frame in websocket:
                self._last_message_at = loop.time()
                message = self.decode(frame)
                if isinstance(message, MalformedFrame):
                    self._malformed(message, on_message)
                    continue
                if isinstance(message, Begin):
                    self.began = True
                    self._began.set()
                    for earlier in self._not_protocol:  # a slip before Begin, after all
                        on_message(earlier)
                on_message(message)
                if isinstance(message, Termination):
                    self.terminated = True
                    return
        except websockets.ConnectionClosed:
            pass  # _raise_for_close reads the code

    def decode(self, frame: str | bytes) -> Received:
        """A frame as the engine may see it: decoded, and every string in it made safe
        (no escape sequences or control characters, the credential masked)."""
        try:
            return self.untrusted.fields(self.codec.decode_server(frame))
        except ProtocolError as error:
            return MalformedFrame(ProtocolError(self.untrusted.text(str(error))))

    def _malformed(self, frame: MalformedFrame, on_message: Callable[[Received], None]) -> None:
        if self.began:
            on_message(frame)
            return
        self._not_protocol.append(frame)  # reported if Begin comes after all
        if len(self._not_protocol) >= NOT_THE_PROTOCOL_AFTER:
            raise NotAStreamingServer(
                f"{self.where} is not an AssemblyAI {self.codec.NAME} server: its first "
                f"{len(self._not_protocol)} messages were not {self.codec.NAME} messages ({frame.error})"
            )

    def _raise_for_close(self, websocket: ClientConnection) -> None:
        if self.terminated:
            return
        error = close_error(websocket, self.where, self.untrusted, terminate_sent=self.terminate_sent)
        if error is not None:
            raise error


def connect_error(error: Exception, where: str, open_timeout: float, untrusted: Untrusted) -> CaptionerError | None:
    """The one line for a handshake that failed; None for an exception that is a bug."""
    if isinstance(error, websockets.InvalidStatus):
        status = error.response.status_code
        if status in (401, 403):
            return AuthError(f"{where} refused the credentials (HTTP {status}); check ASSEMBLYAI_API_KEY")
        return ConnectionFailed(f"{where} refused the session (HTTP {status})")
    if isinstance(error, (websockets.InvalidURI, ValueError)):
        return UsageError(f"not a valid WebSocket URL: {where}")
    if isinstance(error, ConnectionRefusedError):
        return ConnectionFailed(f"cannot connect to {where}: connection refused (is the server running?)")
    if isinstance(error, socket.gaierror):
        return ConnectionFailed(f"cannot connect to {where}: unknown host ({error.strerror})")
    if isinstance(error, TimeoutError):
        return ConnectionFailed(f"cannot connect to {where}: no answer within {open_timeout:g} s")
    if isinstance(error, (OSError, websockets.InvalidHandshake)):
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return ConnectionFailed(f"cannot connect to {where}: {untrusted.text(reason)}")
    return None


def close_error(websocket: ClientConnection, where: str, untrusted: Untrusted, *, terminate_sent: bool) -> CaptionerError | None:
    """What a closed connection means for the meeting, from its close code; None when it
    closed as it should."""
    code, reason = websocket.close_code, untrusted.text(websocket.close_reason or "")
    sent = websocket.protocol.close_sent
    if sent is not None and sent.code == closecodes.MESSAGE_TOO_BIG:
        return MessageTooBig(
            f"{where} sent a message over {MAX_MESSAGE_BYTES >> 20} MiB, more than captioner reads "
            "(a server that is not a speech-to-text service?)", sent.code
        )
    if code == closecodes.NORMAL:
        if terminate_sent:
            return None  # closed cleanly after Terminate, only without the courtesy message
        return ServerError(f"{where} ended the session before the audio did (closed with 1000)", code)
    if code in closecodes.AUTH_FAILURES:
        return AuthError(f"{where} {closecodes.describe(code, reason)}", code)
    if code is None or code == 1006:
        return ConnectionFailed(f"the connection to {where} dropped without a close frame")
    return ServerError(f"{where} {closecodes.describe(code, reason)}", code)


def _version() -> str:
    from .. import __version__

    return __version__
