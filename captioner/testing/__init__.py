"""Deterministic, offline testing for captioner and its plugins: the public test API.

- `FakeStreamingServer`: a real WebSocket server speaking AssemblyAI v3 (and v2), played
  from a `TranscriptScript`, recording every connection (`ConnectionRecord`), with
  faults on request (`close_at`, `drop_at`, `malformed_at`, `Fault`).
- `MisbehavingServer`: servers that break the protocol, one way each.
- `EmbeddedServer` (with `RecognitionSettings`, `ServerLimits`): the offline recognizer
  server, for a recognizer plugin's tests.
- `ServerThread` (alias `FakeServerThread`): runs any of them in a background thread.
- `replay()` / `replay_async()`: a WAV through the real engine with chosen plugins,
  giving a `ReplayResult`; `EventRecorder`: a plugin that keeps every event.
- `captioner.testing.sdk`: the official `assemblyai` SDK against a server (needs it installed).

The pytest plugin (`captioner.testing.pytest_plugin`, loaded through the `pytest11`
entry point) wraps these as the `fake_server`, `replay` and `replay_async` fixtures.
"""

from __future__ import annotations

from ..server.embedded import EmbeddedServer, RecognitionSettings
from ..server.streaming import ServerLimits
from .fake_server import ANY, ConnectionRecord, FakeServerThread, FakeStreamingServer, Fault, Frame, close_at, drop_at, malformed_at
from .misbehaving import BEHAVIOURS, MisbehavingServer
from .recorder import EventRecorder
from .replay import ReplayResult, replay, replay_async
from .script import ScriptError, TranscriptScript, reference_audio
from .thread import ServerThread

__all__ = [
    "ANY",
    "BEHAVIOURS",
    "ConnectionRecord",
    "EmbeddedServer",
    "EventRecorder",
    "FakeServerThread",
    "FakeStreamingServer",
    "Fault",
    "Frame",
    "MisbehavingServer",
    "RecognitionSettings",
    "ReplayResult",
    "ScriptError",
    "ServerLimits",
    "ServerThread",
    "TranscriptScript",
    "close_at",
    "drop_at",
    "malformed_at",
    "reference_audio",
    "replay",
    "replay_async",
]
