"""Speech or not, per 30 ms frame: the voice detector that cuts the embedded server's turns.

PocketSphinx's WebRTC-style detector (the pocketsphinx package, which the embedded
server needs anyway), about 0.003 ms a frame, cheap enough for the event loop.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

SILENCE_PEAK = 64  # of 32768
FRAME_MS = 30
FRAME_SAMPLES = 480  # 30 ms at 16 kHz


class VoiceDetector:
    """Speech or not, per 30 ms frame of 16 kHz audio."""

    def __init__(self, mode: int = 0):
        try:
            from pocketsphinx import Vad
        except ImportError:
            raise UsageError("the embedded server's voice detector needs pocketsphinx: pip install pocketsphinx==5.1.1") from None
        self._vad = Vad(mode=mode, sample_rate=16000, frame_length=FRAME_MS / 1000)
        assert self._vad.frame_bytes == FRAME_SAMPLES * 2

    def is_speech(self, frame: bytes) -> bool:
        # Below -54 dBFS is silence whatever the detector says: measured, after speech
        # it kept answering "speech" for a second of digital silence (zeros).
        if np.abs(np.frombuffer(frame, dtype="<i2")).max(initial=0) < SILENCE_PEAK:
            return False
        return bool(self._vad.is_speech(frame))
