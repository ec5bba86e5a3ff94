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
