"""A live meeting on the command line: signals, and single keys on a terminal.

The first Ctrl-C (or SIGTERM, or `q`) stops the audio and waits, bounded by
--terminate-timeout, for the last finals, so the sentence being spoken is not lost; a
second one exits at once. Keys: p pauses and resumes, e ends the turn now, [ and ]
shorten and lengthen the silence that ends a turn.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Mapping

from ..client.engine import Engine
from ..protocol import v3
from ..protocol.messages import ForceEndpoint, UpdateConfiguration
from .keyboard import KeyboardControls


async def caption_until_stopped(engine: Engine, sources: Mapping[str, object]) -> None:
    """Caption to the end of the sources ({"mic": ..., "meeting": ...}), or until Ctrl-C / SIGTERM.

    The first signal stops the audio and waits (bounded by --terminate-timeout) for the
    last finals, so the sentence being spoken is not lost; a second one exits at once.
    """
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM]
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            print("captioner: stopping; waiting for the last captions (press Ctrl-C again to quit now)",
                  file=sys.stderr, flush=True)
            engine.stop()
        else:
            print("captioner: interrupted", file=sys.stderr, flush=True)
            os._exit(130)

    pausable = [source for source in sources.values() if hasattr(source, "pause")]

    def toggle_pause() -> None:  # every channel: a pause means nothing is captioned
        resume = any(source.paused for source in pausable)
        for source in pausable:
            source.resume() if resume else source.pause()

    def change_silence(step: int) -> None:
        # Unset: the service's documented default (the embedded server's is set explicitly).
        current = engine.current_settings.session.max_turn_silence or v3.MAX_TURN_SILENCE_MS
        wanted = max(160, min(5000, current + step))
        engine.control(UpdateConfiguration({"max_turn_silence": wanted}))
        print(f"captioner: turns now end after {wanted} ms of silence at most", file=sys.stderr, flush=True)

    keys = {
        "q": on_signal,
        "e": lambda: engine.control(ForceEndpoint()),  # end the current turn now
        "[": lambda: change_silence(-200),  # shorter pauses end turns
        "]": lambda: change_silence(+200),
    }
    if pausable:
        keys.update({"p": toggle_pause, " ": toggle_pause})
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        with KeyboardControls(keys):
            await engine.caption(sources)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
