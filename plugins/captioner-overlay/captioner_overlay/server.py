"""The overlay's HTTP and WebSocket server, on its own event loop in its own thread.

One `websockets` server on one port: `process_request` answers plain HTTP requests for
the page and its assets, and `/events` upgrades to a WebSocket that streams caption
messages (see `captions.py`) to any number of viewers.

Why its own loop and thread: whatever viewers do (many of them, slow ones, a flood of
reconnects), the captioner's loop, which sends the audio, never runs any of it. The
plugin's hooks hand each event over with `loop.call_soon_threadsafe` and return.

Each viewer has a bounded outbox. A new partial replaces a partial still waiting there
(only the latest matters), so a slow viewer gets fewer partials, never stale ones. A
viewer that still falls `buffer` messages behind, or does not read at all, is
disconnected: never the captioner, never the other viewers. Its socket's kernel send
buffer is capped too, so a viewer that stops reading is found out after tens of
kilobytes instead of megabytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import http
import socket
import threading
from collections import deque
from importlib import resources
from typing import Callable
from urllib.parse import parse_qs, quote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from captioner import is_loopback_host

from .captions import HISTORY_FINALS, CaptionBoard, encode

EVENTS_PATH = "/events"
VIEWER_BUFFER = 100  # messages waiting for one viewer before it is disconnected
SEND_BUFFER_BYTES = 64 * 1024  # the kernel's send buffer per viewer (Linux doubles it)
WRITE_LIMIT_BYTES = 32 * 1024  # websockets' own buffer per viewer before send() waits
GOING_AWAY = 1001

ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/overlay.js": ("overlay.js", "text/javascript; charset=utf-8"),
    "/overlay.css": ("overlay.css", "text/css; charset=utf-8"),
}
# Only our own files, and sockets back to where the page came from.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Viewer:
    """One connected page: its outbox, and the task that empties it into the socket."""

    def __init__(self, websocket: ServerConnection, buffer: int):
        self.websocket = websocket
        self.buffer = buffer
        self.outbox: deque[tuple[str, str]] = deque()
        self.ready = asyncio.Event()
        self.closing = False

    @property
    def address(self) -> str:
        peer = self.websocket.remote_address
        return f"{bracketed(peer[0])}:{peer[1]}" if peer else "?"

    def offer(self, kind: str, text: str) -> bool:
        """Queue a message; False when the viewer is too far behind to keep."""
        if kind.startswith("partial") and self.outbox and self.outbox[-1][0] == kind:
            self.outbox[-1] = (kind, text)  # superseded before it was even sent (same channel)
            return True
        if len(self.outbox) >= self.buffer:
            return False
        self.outbox.append((kind, text))
        self.ready.set()
        return True

    def close_when_sent(self) -> None:
        self.closing = True
        self.ready.set()

    async def pump(self) -> None:
        while True:
            while not self.outbox:
                if self.closing:
                    await self.websocket.close(GOING_AWAY, "the meeting ended")
                    return
                self.ready.clear()
                await self.ready.wait()
            _, text = self.outbox.popleft()
            await self.websocket.send(text)  # waits while the socket's buffers are full


class OverlayServer:
    """The page, its assets and the event stream. Runs on one event loop; `publish` and
    everything else must be called on that loop (OverlayThread does the hand-over)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        buffer: int = VIEWER_BUFFER,
        history: int = HISTORY_FINALS,
        report: Callable[[str], None] | None = None,
    ):
        self.host, self.port = host, port
        self.token = token
        self.buffer = buffer
        self.board = CaptionBoard(history)
        self.report = report or (lambda message: None)
        self.viewers: set[Viewer] = set()
        self._server: Server | None = None
        self._handlers: set[asyncio.Task] = set()
        static = resources.files(__package__) / "static"
        self._files = {name: (static / name).read_bytes() for name, _ in set(ASSETS.values())}

    @property
    def url(self) -> str:
        return f"http://{bracketed(self.host)}:{self.port}/"

    async def start(self) -> OverlayServer:
        """Listen; raises OSError (e.g. the port is in use)."""
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._route,
            compression=None,  # captions are small; deflate would cost memory per viewer
            write_limit=WRITE_LIMIT_BYTES,
            max_size=4096,  # viewers have nothing to say
            max_queue=4,
            server_header="captioner-overlay",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    # --- events, from the plugin's hooks --------------------------------------------

    def publish(self, hook: str, event: object) -> None:
        message = getattr(self.board, hook)(event)
        if message is None:
            return
        # A partial supersedes only a partial of its own channel.
        kind = message["type"] + (f":{message['channel']}" if message["type"] == "partial" else "")
        text = encode(message)
        for viewer in list(self.viewers):
            if not viewer.offer(kind, text):
                self._drop(viewer)

    def _drop(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        # No closing handshake: a viewer that does not read would not read that either.
        viewer.websocket.transport.abort()
        self.report(
            f"overlay: disconnected the viewer at {viewer.address}: it fell {self.buffer} messages "
            "behind (the page reconnects by itself)"
        )

    # --- HTTP -----------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/favicon.ico":
            return _response(http.HTTPStatus.NO_CONTENT, b"", "text/plain")
        if not self._host_allowed(request.headers.get("Host", "")):
            return _text(http.HTTPStatus.FORBIDDEN, "this overlay answers only to localhost\n")
        if self.token is not None:
            given = (parse_qs(parts.query).get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _text(http.HTTPStatus.FORBIDDEN, "wrong or missing ?token=\n")
        if parts.path == EVENTS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower():
                # Another website open in the same browser must not read the captions.
                return _text(http.HTTPStatus.FORBIDDEN, "cross-origin viewers are refused\n")
            return None  # the WebSocket handshake goes on
        if parts.path not in ASSETS:
            return _text(http.HTTPStatus.NOT_FOUND, "not here: the overlay is at /\n")
        name, kind = ASSETS[parts.path]
        body = self._files[name]
        if name == "index.html":
            # The assets need the token as much as the page does.
            suffix = f"?token={quote(self.token, safe='')}" if self.token is not None else ""
            body = body.replace(b"{{asset_query}}", suffix.encode())
        return _response(http.HTTPStatus.OK, body, kind)

    def _host_allowed(self, host_header: str) -> bool:
        """Without a token, only loopback names: a web page whose DNS name is made to
        point at 127.0.0.1 (DNS rebinding) must not become same-origin with us."""
        if self.token is not None:
            return True
        try:
            host = urlsplit(f"//{host_header}").hostname or ""
        except ValueError:
            return False
        return host == self.host.lower() or is_loopback_host(host)

    # --- WebSocket ------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        sock = websocket.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                pass  # the default buffer only makes a frozen viewer take longer to find
        viewer = Viewer(websocket, self.buffer)
        viewer.offer("history", encode(self.board.snapshot()))
        if self._server is None or not self._server.is_serving():
            viewer.close_when_sent()  # connected as the run ended: the history, then goodbye
        self.viewers.add(viewer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        pump = asyncio.create_task(viewer.pump())
        listen = asyncio.create_task(self._ignore_incoming(websocket))
        try:
            await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.viewers.discard(viewer)
            self._handlers.discard(task)
            for other in (pump, listen):
                other.cancel()
            await asyncio.gather(pump, listen, return_exceptions=True)

    @staticmethod
    async def _ignore_incoming(websocket: ServerConnection) -> None:
        try:
            async for _ in websocket:
                pass
        except ConnectionClosed:
            pass

    async def finish(self, timeout: float) -> None:
        """Stop listening, send every viewer what is queued for it and close (1001);
        viewers that cannot take it within `timeout` seconds are cut off."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        for viewer in list(self.viewers):
            viewer.close_when_sent()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=timeout)
        for viewer in list(self.viewers):
            viewer.websocket.transport.abort()
        self._server.close()  # idempotent; closes whatever is left
        try:
            await asyncio.wait_for(self._server.wait_closed(), timeout=max(timeout, 1.0))
        except asyncio.TimeoutError:
            pass


def _text(status: http.HTTPStatus, text: str) -> Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8")


def _response(status: http.HTTPStatus, body: bytes, kind: str) -> Response:
    headers = Headers([
        ("Content-Type", kind),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),  # the URL may hold the token
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("Connection", "close"),
    ])
    return Response(status.value, status.phrase, headers, body)


class OverlayThread:
    """An OverlayServer on its own event loop in a daemon thread.

    `start()` returns once the server listens, or raises its OSError. `publish` may be
    called from any thread and never waits. `stop()` is bounded by its timeout.
    """

    def __init__(self, server: OverlayServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="captioner-overlay", daemon=True)
        self._started: concurrent.futures.Future = concurrent.futures.Future()

    def start(self) -> OverlayServer:
        self._thread.start()
        return self._started.result()  # raises what start() raised

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as error:
            self._started.set_exception(error)
            self.loop.close()
            return
        self._started.set_result(self.server)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def publish(self, hook: str, event: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.server.publish, hook, event)
        except RuntimeError:
            pass  # the loop is closed: the overlay has ended

    def stop(self, timeout: float = 3.0) -> None:
        if self.loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self.server.finish(timeout), self.loop)
            future.result(timeout + 2)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        self._thread.join(timeout)
