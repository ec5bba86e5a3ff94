from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def fixture(name: str) -> Path:
    return FIXTURES / name


@pytest.fixture
def cli(tmp_path):
    """Run `captioner ARGS...` in a subprocess, in an empty directory, without any API key."""

    def run(*args: str, env: dict | None = None, timeout: float = 120, cwd: Path | None = None):
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "CAPTIONER_"))}
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "captioner", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=cwd or tmp_path,
        )

    return run


class OnTerminal:
    """`captioner ARGS...` with a pseudo-terminal for stdin and stdout, as a user runs it:
    `press(key)` types a key, `read_for(seconds)` collects what it shows meanwhile."""

    def __init__(self, *args: str, env: dict):
        import pty

        self.primary, secondary = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "captioner", *args],
            stdin=secondary, stdout=secondary, stderr=subprocess.PIPE, env=env,
        )
        os.close(secondary)
        self.output = b""

    def read_for(self, seconds: float) -> None:
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.output += os.read(self.primary, 65536)
            except OSError:
                return

    def press(self, key: bytes) -> None:
        os.write(self.primary, key)

    def close(self) -> None:
        os.close(self.primary)


def converse(url: str, frames, query: str = "sample_rate=16000", headers: dict | None = None, timeout: float = 20):
    """Talk to a streaming server directly: send `frames`, then read every JSON message it
    says until it closes. Returns (messages, close code, close reason)."""
    import json

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    received = []
    with connect(f"{url}?{query}", additional_headers=headers or {}) as ws:
        try:
            for frame in frames:
                ws.send(frame)
            while True:
                received.append(json.loads(ws.recv(timeout=timeout)))
        except ConnectionClosed:
            pass
    return received, ws.close_code, ws.close_reason
