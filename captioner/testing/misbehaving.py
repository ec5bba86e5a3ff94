"""Servers that break the streaming protocol in one chosen way, for tests of the client.

The fake server (`FakeStreamingServer`) follows the protocol and injects faults within
it (close codes, drops, a malformed frame). These go further, as servers met in the
field do: one that never sends `Termination`, one that goes silent after `Begin`, one
that never begins, an echo server, one that sends a message too big to read, one whose
text carries terminal escape sequences, one that echoes the API key back.

    with ServerThread(MisbehavingServer("ignore-terminate")) as server:
        run captioner against server.url ...
        server.connections  # how many times the client connected

Each connection reads the client's frames to the end, so a client is never stuck on a
full socket; what the server sends is the behaviour's.
"""

from __future__ import annotations

import json
import uuid

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

BEHAVIOURS = (
    "ignore-terminate",  # Begin, a final after 1 s of audio, then never Termination
    "begin-then-silence",  # Begin, then nothing at all
    "never-begin",  # accepts the connection, reads everything, says nothing
    "echo",  # sends every frame back: not a v3 server
    "oversize",  # Begin, then a 2 MiB Turn
    "hostile-text",  # turns, a warning and an error whose text is `text`; Termination as usual
    "echo-key",  # echoes the Authorization header in a warning, an error and a close reason, then behaves
    "stops-beginning",  # the first connection begins, sends a final and closes with 1011; later ones never begin
)

HOSTILE_TEXT = (
    "hello \x1b]0;pwned\x07there \x1b[2J\x1b[H\x1b]52;c;cm0gLXJmIH4=\x07friend\r\n\x00\x9b31m again\u202e"
)


class MisbehavingServer:
    def __init__(self, behaviour: str, *, text: str = HOSTILE_TEXT, host: str = "127.0.0.1", port: int = 0):
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {', '.join(BEHAVIOURS)}")
        self.behaviour = behaviour
        self.text = text
        self.host, self.port = host, port
        self.connections = 0
        self._server: Server | None = None

    @property
    def base_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + "/v3/ws"

    async def start(self) -> MisbehavingServer:
        # max_size=None: reading whatever the client sends is not what is being tested.
        self._server = await serve(self._handle, self.host, self.port, max_size=None, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, websocket: ServerConnection) -> None:
        self.connections += 1
        key = websocket.request.headers.get("Authorization", "")
        try:
            await getattr(self, "_" + self.behaviour.replace("-", "_"))(websocket, key)
        except ConnectionClosed:
            pass

    # ---------------------------------------------------------------- behaviours

    async def _ignore_terminate(self, websocket: ServerConnection, key: str) -> None:
        await _begin(websocket)
        audio = 0
        async for frame in websocket:
            if isinstance(frame, bytes):
                audio += len(frame)
                if audio >= 32000 and audio - len(frame) < 32000:  # after 1 s of 16 kHz audio
                    await websocket.send(_turn(0, "hello there", 300, 900, final=True))

    async def _begin_then_silence(self, websocket: ServerConnection, key: str) -> None:
        await _begin(websocket)
        await _read_all(websocket)

    async def _never_begin(self, websocket: ServerConnection, key: str) -> None:
        await _read_all(websocket)

    async def _echo(self, websocket: ServerConnection, key: str) -> None:
        async for frame in websocket:
            await websocket.send(frame)

    async def _oversize(self, websocket: ServerConnection, key: str) -> None:
        await _begin(websocket)
        await websocket.send(_turn(0, "word " * 420_000, 0, 100, final=False))
        await _read_all(websocket)

    async def _hostile_text(self, websocket: ServerConnection, key: str) -> None:
        await _begin(websocket)
        await websocket.send(json.dumps({"type": "Warning", "warning_code": 1, "warning": self.text}))
        await websocket.send(_turn(0, self.text, 300, 900, final=False, speaker=self.text))
        await websocket.send(_turn(0, self.text, 300, 900, final=True, speaker=self.text))
        await websocket.send(json.dumps({"type": "Error", "error": self.text}))
        await _terminate_when_asked(websocket)

    async def _echo_key(self, websocket: ServerConnection, key: str) -> None:
        await _begin(websocket)
        if self.connections == 1:
            await websocket.send(json.dumps({"type": "Warning", "warning_code": 1, "warning": f"your key {key} is old"}))
            await websocket.send(json.dumps({"type": "Error", "error": f"key={key} rejected for this feature"}))
            await websocket.close(1011, f"internal error for {key}")
            return
        await websocket.send(_turn(0, "hello there", 300, 900, final=True))
        await _terminate_when_asked(websocket)


    async def _stops_beginning(self, websocket: ServerConnection, key: str) -> None:
        if self.connections > 1:
            await _read_all(websocket)
            return
        await _begin(websocket)
        await websocket.send(_turn(0, "hello there", 300, 900, final=True))
        await websocket.close(1011, "internal error")


async def _begin(websocket: ServerConnection) -> None:
    await websocket.send(json.dumps({"type": "Begin", "id": str(uuid.uuid4()), "expires_at": 4102444800}))


async def _read_all(websocket: ServerConnection) -> None:
    async for _ in websocket:
        pass


async def _terminate_when_asked(websocket: ServerConnection) -> None:
    async for frame in websocket:
        if isinstance(frame, str) and json.loads(frame).get("type") == "Terminate":
            await websocket.send(json.dumps({"type": "Termination", "audio_duration_seconds": 1,
                                             "session_duration_seconds": 1}))
            await websocket.close(1000)
            return


def _turn(order: int, text: str, start: int, end: int, *, final: bool, speaker: str | None = None) -> str:
    tokens = text.split()[:50]
    step = (end - start) // max(1, len(tokens))
    words = [{"text": word, "start": start + i * step, "end": start + (i + 1) * step, "confidence": 0.9,
              "word_is_final": True} for i, word in enumerate(tokens)]
    body = {"type": "Turn", "turn_order": order, "turn_is_formatted": False, "end_of_turn": final,
            "transcript": text, "end_of_turn_confidence": 0.9, "words": words}
    if speaker is not None:
        body["speaker_label"] = speaker
    return json.dumps(body)


__all__ = ["BEHAVIOURS", "HOSTILE_TEXT", "MisbehavingServer"]
