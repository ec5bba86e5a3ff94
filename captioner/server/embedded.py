"""The embedded recognizer server: `captioner serve`, and the default with no API key.

A `StreamingServer` (captioner.server.streaming) whose sessions are
`RecognizerTranscriber`s (captioner.server.transcriber): each cuts its audio into turns
with a voice detector and `TurnDetector`, and sends finished stretches of audio to a
shared `DecodePool` of worker threads, each holding its own decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decoding import DecodePool
from .recognizer import Recognizer
from .streaming import ServerLimits, StreamingServer
from .transcriber import RecognitionSettings, RecognizerTranscriber

if TYPE_CHECKING:
    from .handover import Handover

__all__ = ["EmbeddedServer", "RecognitionSettings"]

# The service's own limits, so a runaway client cannot take the machine: sessions idle
# 30 s are closed, at most 16 at once (in each worker process), each at most 4 hours
# (captioner's client reconnects seamlessly when a session reaches it).
DEFAULT_LIMITS = ServerLimits(idle_timeout=30, max_sessions=16, max_session_seconds=4 * 3600)


class EmbeddedServer(StreamingServer):
    """The AssemblyAI v3 protocol in front of a local recognizer."""

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        workers: int | None = None,
        settings: RecognitionSettings = RecognitionSettings(),
        limits: ServerLimits = DEFAULT_LIMITS,
        handover: Handover | None = None,
    ):
        self.pool = DecodePool(recognizer, workers)
        self.recognition = settings
        super().__init__(
            lambda params, emit: RecognizerTranscriber(params, emit, self.pool, self.recognition),
            host=host,
            port=port,
            api_key=api_key,
            limits=limits,
            handover=handover,
        )

    async def start(self) -> EmbeddedServer:
        await self.pool.warm()  # ready means the models are loaded
        await super().start()
        return self

    async def stop(self) -> None:
        await super().stop()
        self.pool.close()
